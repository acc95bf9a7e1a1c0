"""mmseg's pipeline ops on (image, label) pairs: label decoding with
reduce_zero_label, mmcv's keep-ratio sizes, the cat_max_ratio crop, flips and
padding that keep image and label aligned, and malformed label maps skipped
and counted by the pipeline."""
import io

import numpy as np
import pytest
from PIL import Image

from vision_jax.batch import IMAGE, IMAGE_SIZE, ORIGINAL_SIZE, SEGMENTATION, SKIPPED
from vision_jax.data import pipeline
from vision_jax.tasks.segmentation import transforms


def _png(label):
  buffer = io.BytesIO()
  Image.fromarray(label.astype(np.uint8), mode="L").save(buffer, format="PNG")
  return buffer.getvalue()


def _example(h=6, w=8, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
  label = rng.integers(0, 4, (h, w)).astype(np.uint8)
  return image, label


def test_label_decoding_reduces_zero_and_counts_invalid_labels():
  image, _ = _example()
  label = np.array([[0, 1, 150, 151, 255, 7, 2, 3]] * 6, np.uint8)
  out = transforms.seg_label(reduce_zero_label=True, num_classes=150)(
      {IMAGE: image, "segmentation": _png(label)}, None)
  np.testing.assert_array_equal(out[SEGMENTATION][0], [255, 0, 149, 255, 255, 6, 1, 2])
  assert int(out["count/invalid_label_pixels"]) == 6  # 151 -> 150 >= 150 classes, per row.
  np.testing.assert_array_equal(out[ORIGINAL_SIZE], [6, 8])
  rgb = np.repeat(label[..., None], 3, -1)  # TFDS scene_parse150 stores 3-channel PNGs.
  same = transforms.seg_label("annotation")({IMAGE: image, "annotation": rgb}, None)
  np.testing.assert_array_equal(same[SEGMENTATION], label)
  with pytest.raises(ValueError, match=r"Label map of size \(3, 8\) for an image of size \(6, 8\)"):
    transforms.seg_label()({IMAGE: image, "segmentation": _png(label[:3])}, None)
  with pytest.raises(ValueError, match="Unreadable label map"):
    transforms.seg_label()({IMAGE: image, "segmentation": b"not a png"}, None)


@pytest.mark.parametrize("hw, scale, expected", [
    ((512, 683), (2048, 512), (512, 683)), ((375, 500), (2048, 512), (512, 683)),
    ((1200, 300), (2048, 512), (2048, 512)), ((100, 133), (200, 100), (100, 133)),
    ((333, 1000), (2048, 512), (512, 1538))])
def test_keep_ratio_sizes_are_mmcv_rescale_size(hw, scale, expected):
  """mmcv: factor = min(long / max(h, w), short / min(h, w)), int(x * f + 0.5)."""
  assert transforms.rescale_size(*hw, scale) == expected


def test_resize_aligns_to_the_divisor_and_keeps_the_test_label():
  image, label = _example(30, 40)
  ex = {IMAGE: image, SEGMENTATION: label, IMAGE_SIZE: np.array([30, 40])}
  out = transforms.seg_resize((64, 48), size_divisor=32, resize_label=False)(ex, None)
  assert out[IMAGE].shape == (64, 64, 3) and tuple(out[IMAGE_SIZE]) == (64, 64)  # 48x64 -> 64x64.
  assert out[SEGMENTATION] is label
  out = transforms.seg_resize((80, 60))(ex, np.random.default_rng(0))
  assert out[IMAGE].shape[:2] == out[SEGMENTATION].shape == (60, 80)
  assert set(np.unique(out[SEGMENTATION])) <= set(np.unique(label))  # Nearest: no new labels.


def test_crop_redraws_until_no_class_dominates():
  label = np.zeros((40, 40), np.uint8)
  label[26:, 26:] = 1  # One corner of class 1: most crops are all class 0.
  image = np.zeros((40, 40, 3), np.uint8)
  image[..., 0] = label * 100
  crop = transforms.seg_random_crop(12, cat_max_ratio=0.75)
  plain = transforms.seg_random_crop(12)
  mixed = plain_mixed = 0
  for seed in range(50):
    out = crop({IMAGE: image, SEGMENTATION: label}, np.random.default_rng(seed))
    np.testing.assert_array_equal(out[IMAGE][..., 0], out[SEGMENTATION] * 100)  # Aligned.
    share = np.bincount(out[SEGMENTATION].ravel(), minlength=2).max() / 144
    mixed += share < 0.75
    plain_mixed += np.bincount(plain({IMAGE: image, SEGMENTATION: label},
                                     np.random.default_rng(seed))[SEGMENTATION].ravel(),
                               minlength=2).max() / 144 < 0.75
  assert mixed >= 3 * max(plain_mixed, 1), (mixed, plain_mixed)


def test_flip_photometric_and_pad_keep_labels_aligned():
  image, label = _example(6, 8)
  ex = {IMAGE: image, SEGMENTATION: label}
  flipped = transforms.seg_flip(1.0)(ex, np.random.default_rng(0))
  np.testing.assert_array_equal(flipped[IMAGE], image[:, ::-1])
  np.testing.assert_array_equal(flipped[SEGMENTATION], label[:, ::-1])
  changed = 0
  for seed in range(8):
    out = transforms.photometric_distortion()(ex, np.random.default_rng(seed))
    assert out[SEGMENTATION] is label and out[IMAGE].dtype == np.uint8
    changed += not np.array_equal(out[IMAGE], image)
  assert changed >= 6  # Each of the four steps is skipped with probability 1/2.
  padded = transforms.seg_pad(10, label_size=(12, 9))(ex, None)
  assert padded[IMAGE].shape == (10, 10, 3) and padded[SEGMENTATION].shape == (12, 9)
  assert (padded[IMAGE][6:] == 0).all() and (padded[SEGMENTATION][6:] == 255).all()
  np.testing.assert_array_equal(padded[SEGMENTATION][:6, :8], label)
  with pytest.raises(ValueError, match=r"Image of size \(6, 8\) exceeds its canvas \(4, 4\)"):
    transforms.seg_pad(4)(ex, None)


def test_malformed_label_maps_are_skipped_and_counted(seg_folder):
  """The fixture's train split: 5 paired images (the sixth has no label map
  and is left out), one label of the wrong size and one that is not a PNG."""
  root, _ = seg_folder
  pp = ("decode(channels=3)|seg_label()|seg_random_crop(32)|seg_pad(32)|"
        "keep('image', 'segmentation', 'image/size', 'image/original_size')")
  spec = pipeline.DataSpec("seg_folder", "train", pp, global_batch=5, data_dir=root)
  data = pipeline.TrainData(spec)
  assert data.num_examples == 5
  batch = next(iter(data))
  assert int(batch[SKIPPED].sum()) == 2 and batch[SEGMENTATION].shape == (5, 32, 32)
  data.close()
