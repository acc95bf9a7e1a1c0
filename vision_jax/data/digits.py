"""The embedded default dataset: scikit-learn's bundled handwritten digits.

1,797 real 8x8 grey-scale scans of the digits 0-9 (UCI optdigits test set, as
shipped inside scikit-learn, so nothing is downloaded). Pixel values 0..16 are
scaled to 0..255 and stored PNG-encoded like any TFDS image dataset; a fixed,
class-stratified 80/20 split gives 1,437 train and 360 test examples.
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


def _png(image_0_16: np.ndarray) -> bytes:
  pixels = np.minimum(np.round(image_0_16 * 16.0), 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG")
  return buffer.getvalue()


class SklearnDigits(tfds.core.GeneratorBasedBuilder):
  """TFDS builder for scikit-learn's digits; prepared locally on first use."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "8x8 digits from scikit-learn, stratified 80/20 split."}

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
    return {split: self._generate_examples(split) for split in ("train", "test")}

  def _generate_examples(self, split: str):
    from sklearn.datasets import load_digits
    digits = load_digits()
    for index in split_indices(digits.target)[split]:
      yield int(index), {"image": io.BytesIO(_png(digits.images[index])),
                         "label": int(digits.target[index])}
