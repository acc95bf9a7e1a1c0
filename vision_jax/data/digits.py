"""The embedded default dataset: scikit-learn's bundled handwritten digits.

1,797 real 8x8 grey-scale scans of the digits 0-9 (UCI optdigits test set, as
shipped inside scikit-learn, so nothing is downloaded). Pixel values 0..16 are
scaled to 0..255 and stored PNG-encoded like any TFDS image dataset; a fixed,
class-stratified 80/20 split gives 1,438 train and 359 test examples.
Splits `{train,test}_0to4` and `{train,test}_5to9` hold the digits 0-4 and 5-9
of those (labels unchanged): a source task and a disjoint target task for
transfer experiments.
"""
import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

TEST_FRACTION = 0.2
SPLIT_SEED = 0


def split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """Class-stratified train/test indices, fixed by SPLIT_SEED."""
  rng = np.random.default_rng(SPLIT_SEED)
  train, test = [], []
  for label in np.unique(labels):
    idx = rng.permutation(np.flatnonzero(labels == label))
    n_test = int(round(len(idx) * TEST_FRACTION))
    test.extend(idx[:n_test])
    train.extend(idx[n_test:])
  return {"train": np.sort(train), "test": np.sort(test)}


# Class-subset splits: name -> (base split, digits it keeps).
CLASS_SPLITS = {f"{base}_{lo}to{hi}": (base, range(lo, hi + 1))
                for base in ("train", "test") for lo, hi in ((0, 4), (5, 9))}


def all_split_indices(labels: np.ndarray) -> dict[str, np.ndarray]:
  """The train/test split and its class subsets (CLASS_SPLITS)."""
  out = split_indices(labels)
  for name, (base, digits) in CLASS_SPLITS.items():
    out[name] = out[base][np.isin(labels[out[base]], list(digits))]
  return out


def _png(image_0_16: np.ndarray) -> bytes:
  pixels = np.minimum(np.round(image_0_16 * 16.0), 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """TFDS builder for scikit-learn's digits; prepared locally on first use."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "8x8 digits from scikit-learn, stratified 80/20 split.",
                   "1.1.0": "Class-subset splits train/test_0to4 and train/test_5to9."}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(8, 8, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=("image", "label"),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split)
            for split in ("train", "test", *CLASS_SPLITS)}

  def _generate_examples(self, split: str):
    from sklearn.datasets import load_digits
    digits = load_digits()
    for index in all_split_indices(digits.target)[split]:
      yield int(index), {"image": io.BytesIO(_png(digits.images[index])),
                         "label": int(digits.target[index])}
