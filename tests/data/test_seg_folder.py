"""mmseg-layout folders and the generated shapes_seg_demo dataset."""
import numpy as np
import pytest

from vision_jax.data import seg_folder as seg_folder_lib, shapes_seg, sources


def test_folder_pairs_images_with_label_maps_by_stem(seg_folder):
  root, _ = seg_folder
  train = sources.open_source("seg_folder", "train", root)
  assert len(train) == 5 and train.report == {"images_without_label": 1,
                                              "labels_without_image": 0}
  record = train[2]
  assert record["image/filename"] == b"002.jpg" and int(record["image/id"]) == 2
  assert record["segmentation"].startswith(b"\x89PNG")
  assert [int(sources.open_source("seg_folder", "val[1:3]", root)[i]["image/id"])
          for i in range(2)] == [1, 2]
  with pytest.raises(sources.DataMissingError, match="images/test/ and PNG label maps"):
    seg_folder_lib.SegmentationFolder(root, "test")
  with pytest.raises(sources.DataMissingError, match="set config.data.data_dir"):
    sources.open_source("seg_folder", "train", None)


def test_generated_images_are_deterministic_with_every_class_and_thin_lines():
  image, label = shapes_seg.render("train", 3)
  again, label_again = shapes_seg.render("train", 3)
  np.testing.assert_array_equal(image, again)
  np.testing.assert_array_equal(label, label_again)
  assert image.shape[:2] == label.shape and 128 <= min(label.shape) <= max(label.shape) <= 256
  seen = np.zeros(len(shapes_seg.CLASSES), int)
  for index in range(40):
    seen += np.bincount(shapes_seg.render("val", index)[1].ravel(), minlength=len(seen)) > 0
  assert (seen > 0).all(), seen  # Every class occurs in the first 40 val images.
  _, label = next(shapes_seg.render("val", i) for i in range(40)
                  if (shapes_seg.render("val", i)[1] == shapes_seg.LINE).any())
  lines = label == shapes_seg.LINE
  thickness = lines.sum(0)[lines.any(0)]
  assert np.median(thickness) <= 4  # Thin structures: a few pixels across.
