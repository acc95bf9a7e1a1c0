"""Detection pp ops: mmdet's resize rounding, box conversion, flip, padding, counts."""
import numpy as np
import pytest

from vision_jax import tasks
from vision_jax.tasks.detection import transforms as dt
from vision_jax.data.transforms import Preprocess


def _rng(seed=0):
  return np.random.default_rng(seed)


def _example(h=100, w=200, bbox=(), label=(), crowd=None):
  bbox = np.asarray(bbox, np.float32).reshape(-1, 4)
  crowd = np.zeros(len(bbox), bool) if crowd is None else np.asarray(crowd, bool)
  return {"image": np.zeros((h, w, 3), np.uint8), "image/id": np.int64(77),
          "image/filename": b"f.jpg",
          "objects": {"bbox": bbox, "label": np.asarray(label, np.int64), "is_crowd": crowd,
                      "area": np.ones(len(bbox)), "id": np.arange(len(bbox))}}


def test_coco_objects_converts_clips_and_counts():
  ex = _example(bbox=[[0.1, 0.25, 0.5, 0.75],     # -> [50, 10, 150, 50]
                      [-0.2, 0.9, 0.3, 1.2],      # clipped -> [180, 0, 200, 30]
                      [0.5, 0.5, 0.4, 0.6],       # ymax < ymin
                      [0.2, 0.2, 0.2051, 0.6],    # 0.51 px tall < min_size
                      [1.1, 0.0, 1.3, 1.0],       # below the image
                      [np.nan, 0.1, 0.2, 0.2],    # not finite
                      [0.0, 0.0, 1.0, 1.0],       # unknown class
                      [0.0, 0.0, 1.0, 1.0]],      # crowd
                label=[3, 1, 2, 2, 2, 2, -1, 4], crowd=[0, 0, 0, 0, 0, 0, 0, 1])
  out = dt.coco_objects()(ex, _rng())
  assert set(out) == {"image", "image/id", "boxes", "classes", "count/dropped_boxes"}
  np.testing.assert_allclose(out["boxes"], [[50, 10, 150, 50], [180, 0, 200, 30]], rtol=1e-6)
  assert out["boxes"].dtype == np.float32 and out["classes"].tolist() == [3, 1]
  assert out["classes"].dtype == np.int32 and out["image/id"].dtype == np.int32
  assert out["count/dropped_boxes"] == 5  # The crowd box is removed, not counted.
  with_crowd = dt.coco_objects(drop_crowd=False, min_size=0.5)(ex, _rng())
  assert with_crowd["classes"].tolist() == [3, 1, 2, 4]
  assert with_crowd["count/dropped_boxes"] == 4


def test_coco_objects_reads_tfds_lists_and_empty_objects():
  ex = _example()
  ex["objects"] = {"bbox": [np.float32([0.0, 0.0, 0.5, 0.5])], "label": [np.int64(7)],
                   "is_crowd": [np.False_], "area": [np.int64(3)], "id": [np.int64(1)]}
  out = dt.coco_objects()(ex, _rng())
  np.testing.assert_allclose(out["boxes"], [[0, 0, 100, 50]])
  ex["objects"] = {"bbox": [], "label": [], "is_crowd": [], "area": [], "id": []}
  out = dt.coco_objects()(ex, _rng())
  assert out["boxes"].shape == (0, 4) and out["classes"].shape == (0,)
  with pytest.raises(ValueError, match="put `decode` first"):
    dt.coco_objects()({**ex, "image": b"jpeg"}, _rng())


@pytest.mark.parametrize("hw, expected", [
    ((480, 640), (800, 1067)),    # Short side bound: 800 / 480.
    ((640, 480), (1067, 800)),
    ((427, 640), (800, 1199)),    # 640 * 800 / 427 = 1199.06.
    ((100, 1000), (133, 1333)),   # Long side bound: 1333 / 1000.
    ((800, 1333), (800, 1333)),
])
def test_resize_keep_ratio_sizes_follow_mmcv_rounding(hw, expected):
  assert dt.keep_ratio_size(*hw, 800, 1333) == expected


def test_resize_keep_ratio_scales_image_and_boxes():
  ex = {"image": np.full((480, 640, 3), 200, np.uint8),
        "boxes": np.array([[64, 48, 320, 240], [600, 400, 640, 480]], np.float32)}
  out = dt.resize_keep_ratio()(ex, _rng())
  assert out["image"].shape == (800, 1067, 3) and (out["image"] == 200).all()
  np.testing.assert_array_equal(out["image/size"], [800, 1067])
  assert out["image/size"].dtype == np.int32 and out["image/scale"].dtype == np.float32
  np.testing.assert_allclose(out["image/scale"], [800 / 480, 1067 / 640])
  sx, sy = 1067 / 640, 800 / 480
  np.testing.assert_allclose(out["boxes"], [[64 * sx, 48 * sy, 320 * sx, 240 * sy],
                                            [600 * sx, 400 * sy, 1067, 800]], rtol=1e-6)
  small = {"image": np.arange(12, dtype=np.uint8).reshape(2, 3, 2)}  # Any channel count.
  up = dt.resize_keep_ratio(4, 6, method="nearest")(small, _rng())["image"]
  np.testing.assert_array_equal(up, small["image"].repeat(2, 0).repeat(2, 1))


def test_flip_lr_boxes_mirrors_about_the_image_width():
  image = np.arange(2 * 100 * 3, dtype=np.uint8).reshape(2, 100, 3)
  ex = {"image": image, "boxes": np.array([[10, 5, 30, 25], [0, 0, 0, 0]], np.float32),
        "classes": np.array([1, -1], np.int32)}
  out = dt.flip_lr_boxes(p=1.0)(ex, _rng())
  np.testing.assert_array_equal(out["image"], image[:, ::-1])
  np.testing.assert_array_equal(out["boxes"], [[70, 5, 90, 25], [0, 0, 0, 0]])  # Padding stays.
  assert dt.flip_lr_boxes(p=0.0)(ex, _rng()) is ex
  flips = [dt.flip_lr_boxes()(ex, _rng(s))["boxes"][0, 0] == 70 for s in range(40)]
  assert 10 < sum(flips) < 30
  assert [dt.flip_lr_boxes()(ex, _rng(s))["boxes"][0, 0] == 70 for s in range(40)] == flips


def test_pad_to_canvas():
  image = np.ones((3, 5, 3), np.float32)
  out = dt.pad_to(4, 8)({"image": image}, _rng())["image"]
  assert out.shape == (4, 8, 3) and out.dtype == np.float32
  assert out[:3, :5].all() and out.sum() == image.sum()
  grey = dt.pad_to(4, 8)({"image": np.ones((4, 8, 1), np.uint8)}, _rng())["image"]
  assert grey.dtype == np.uint8 and grey.all()
  with pytest.raises(ValueError, match=r"pad_to\(4, 4\): the image is 3x5, larger than the 4x4 canvas"):
    dt.pad_to(4, 4)({"image": image}, _rng())


def test_pad_to_canvas_pads_to_the_groups_canvas_and_drops_it():
  image = np.ones((3, 5, 3), np.float32)
  out = dt.pad_to_canvas()({"image": image, "canvas": np.array([4, 6], np.int32)}, _rng())
  assert set(out) == {"image"} and out["image"].shape == (4, 6, 3)
  assert out["image"][:3, :5].all() and out["image"].sum() == image.sum()
  with pytest.raises(ValueError, match=r"pad_to_canvas: the image is 3x5, larger than the 6x4 canvas"):
    dt.pad_to_canvas()({"image": image, "canvas": np.array([6, 4], np.int32)}, _rng())
  with pytest.raises(ValueError, match="pad_to_canvas needs aspect-ratio groups: set config.data.canvases"):
    dt.pad_to_canvas()({"image": image}, _rng())


def test_pad_boxes_pads_truncates_and_counts():
  ex = {"boxes": np.arange(12, dtype=np.float32).reshape(3, 4), "classes": np.array([5, 6, 7]),
        "image/id": np.int64(9)}
  out = dt.pad_boxes(5)(ex, _rng())
  np.testing.assert_array_equal(out["boxes"][:3], ex["boxes"])
  assert not out["boxes"][3:].any() and out["classes"].tolist() == [5, 6, 7, -1, -1]
  assert (out["count/truncated_boxes"], out["count/dropped_boxes"]) == (0, 0)
  assert out["count/dropped_boxes"].dtype == np.int32 and out["image/id"].dtype == np.int32
  short = dt.pad_boxes(2)({**ex, "count/dropped_boxes": np.int32(4)}, _rng())
  assert short["classes"].tolist() == [5, 6] and short["boxes"].shape == (2, 4)
  assert (short["count/truncated_boxes"], short["count/dropped_boxes"]) == (1, 4)
  with pytest.raises(ValueError, match="does not fit in int32"):
    dt.pad_boxes(2)({**ex, "image/id": np.int64(2**31)}, _rng())


def test_registered_chain_gives_the_batch_features():
  assert tasks.PP_OPS.get("coco_objects") is dt.coco_objects
  pp = Preprocess("coco_objects|resize_keep_ratio(64, 96)|flip_lr_boxes(1.0)"
                  "|normalize(0.5, 0.5)|pad_to(96, 96)|pad_boxes(4)")
  out = pp(_example(h=30, w=40, bbox=[[0.1, 0.25, 0.5, 0.75]], label=[2]), _rng())
  assert sorted(out) == ["boxes", "classes", "count/dropped_boxes", "count/truncated_boxes",
                         "image", "image/id", "image/scale", "image/size"]
  assert out["image"].shape == (96, 96, 3) and out["image"].dtype == np.float32
  np.testing.assert_array_equal(out["image/size"], [64, 85])
  # Box [10, 3, 30, 15] -> x 85/40, y 64/30 -> flipped in the 85 px wide image.
  np.testing.assert_allclose(out["boxes"][0], [85 - 30 * 85 / 40, 3 * 64 / 30, 85 - 10 * 85 / 40,
                                               15 * 64 / 30], rtol=1e-6)
  assert out["classes"].tolist() == [2, -1, -1, -1]
