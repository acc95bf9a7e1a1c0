"""CULane-layout lane folders: list parsing, the lane_targets pp op's checks,
the generated lanes_demo (lanes on their labels), configs/scnn/culane.py's
recipe, and a short end-to-end demo run scored by the CULane F1."""
import os

import numpy as np
import pytest
from PIL import Image

from brief_run import brief_run
from vision_jax import config as config_lib
from vision_jax.batch import IMAGE, LANE_EXIST, LANE_POINTS, ORIGINAL_SIZE, SEGMENTATION
from vision_jax.data import lane_folder, lanes_demo, sources
from vision_jax.errors import DataMissingError
from vision_jax.tasks.lanes.transforms import lane_targets
from configs.scnn import culane


def _write_culane(root, list_lines, h=6, w=8):
  os.makedirs(os.path.join(root, "list"))
  os.makedirs(os.path.join(root, "drive", "clip"))
  os.makedirs(os.path.join(root, "seg", "clip"))
  for n in ("a", "b"):
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(os.path.join(root, "drive", "clip",
                                                                        n + ".jpg"))
  label = np.zeros((h, w), np.uint8)
  label[:, 2], label[:, 5] = 2, 3
  Image.fromarray(label, mode="L").save(os.path.join(root, "seg", "clip", "a.png"))
  with open(os.path.join(root, "drive", "clip", "a.lines.txt"), "w") as f:
    f.write("2.0 5 2.5 3 \n5 5 5.5 1\n")
  with open(os.path.join(root, "list", "train_gt.txt"), "w") as f:
    f.write("".join(line + "\n" for line in list_lines))


def test_lane_folder_reads_the_list_labels_flags_and_lines(tmp_path):
  root = str(tmp_path / "culane")
  _write_culane(root, ["/drive/clip/a.jpg /seg/clip/a.png 0 1 1 0", "", "/drive/clip/b.jpg"])
  folder = sources.open_source("lane_folder", "train_gt", root)
  assert isinstance(folder, lane_folder.LaneFolder) and len(folder) == 2
  a, b = folder[0], folder[1]
  np.testing.assert_array_equal(a[LANE_EXIST], [0, 1, 1, 0])
  assert a["image/filename"] == b"drive/clip/a.jpg" and a[lane_folder.LINES].startswith(b"2.0 5")
  assert b["segmentation"] == b"" and b[lane_folder.LINES] == b"" and int(b["image/id"]) == 1
  assert len(sources.open_source("lane_folder", "train_gt[1:]", root)) == 1

  ex = lane_targets()({**a, IMAGE: np.zeros((6, 8, 3), np.uint8)}, None)
  assert lane_folder.LINES not in ex and ex[SEGMENTATION].dtype == np.uint8
  np.testing.assert_array_equal(np.unique(ex[SEGMENTATION]), [0, 2, 3])
  np.testing.assert_array_equal(ex[ORIGINAL_SIZE], [6, 8])
  points = ex[LANE_POINTS]
  assert points.shape == (4, 80, 2)
  np.testing.assert_array_equal(points[0, :2], [[2, 5], [2.5, 3]])
  np.testing.assert_array_equal(points[1, :2], [[5, 5], [5.5, 1]])
  assert np.isnan(points[0, 2:]).all() and np.isnan(points[2:]).all()
  with pytest.raises(ValueError, match="no lane-segmentation label"):
    lane_targets()({**b, IMAGE: np.zeros((6, 8, 3), np.uint8)}, None)
  assert SEGMENTATION not in lane_targets(segmentation=False)(
      {**b, IMAGE: np.zeros((6, 8, 3), np.uint8)}, None)


@pytest.mark.parametrize("change, error", [
    ({lane_folder.LINES: b"1 2 3\n"}, "odd number of coordinates"),
    ({lane_folder.LINES: b"1 2 3 4\n" * 5}, "5 lanes in the .lines.txt; lane_targets has max_lanes=4"),
    ({lane_folder.LINES: b" ".join([b"1 2"] * 81)}, "81 points; lane_targets has max_points=80"),
    ({LANE_EXIST: np.array([0, 2, 1, 0], np.float32)}, "expected 4 values of 0 or 1"),
])
def test_malformed_lane_records_raise_naming_the_problem(change, error):
  ex = {IMAGE: np.zeros((6, 8, 3), np.uint8), "segmentation": np.zeros((6, 8), np.uint8),
        LANE_EXIST: np.zeros(4, np.float32), lane_folder.LINES: b"", **change}
  with pytest.raises(ValueError, match=error):
    lane_targets()(ex, None)


def test_bad_lists_fail_naming_the_file_and_line(tmp_path):
  root = str(tmp_path / "culane")
  _write_culane(root, ["/drive/clip/a.jpg /seg/clip/a.png 0 1"])
  with pytest.raises(DataMissingError, match=r"train_gt.txt:1: expected an image path"):
    lane_folder.LaneFolder(root, "train_gt")
  with pytest.raises(DataMissingError, match=r"no split 'test'.*list/<split>.txt"):
    lane_folder.LaneFolder(root, "test")


def test_generated_lanes_lie_on_their_slot_labels():
  for index in range(5):
    image, label, exist, lanes = lanes_demo.render("train", index)
    assert image.shape == lanes_demo.SIZE + (3,) and label.shape == lanes_demo.SIZE
    slots = np.nonzero(exist)[0] + 1
    assert len(lanes) == len(slots)
    for slot, lane in zip(slots, lanes):
      x, y = np.round(lane[:, 0]).astype(int), np.round(lane[:, 1]).astype(int)
      padded = np.pad(label, 1)  # Each point within 1 px of its lane's label.
      near = [np.any(padded[j:j + 3, i:i + 3] == slot) for i, j in zip(x, y)]
      assert all(near), (index, slot, near)
      assert np.all(np.diff(lane[:, 1]) < 0)  # Bottom first, as CULane's files.


def test_culane_variant_is_the_official_recipe():
  c = culane.get_config("variant=culane")
  config_lib.validate(c)
  assert (c.model.name, c.task.name, c.data.name) == ("scnn_vgg16", "lanes", "lane_folder")
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.momentum,
          c.optimizer.weight_decay) == ("sgd", 0.01, 0.9, 1e-4)
  assert (c.schedule.name, c.schedule.power, c.total_steps, c.data.batch_size) == (
      "poly", 0.9, 60_000, 12)
  assert "seg_resize((800, 288), keep_ratio=False)" in c.data.pp_train
  assert "(0.3598, 0.3653, 0.3662), (0.2573, 0.2663, 0.2756)" in c.data.pp_train
  with pytest.raises(config_lib.ConfigError, match="variant='tusimple'"):
    culane.get_config("variant=tusimple")


@pytest.mark.slow
def test_demo_trains_and_counts_every_lane_in_the_f1(tmp_path, monkeypatch):
  monkeypatch.setattr(lanes_demo, "SPLITS", {"train": 16, "val": 6})
  c = culane.get_config()
  c.data.eval_batch_size = 4  # Two batches, the second padded.
  result, rows, _ = brief_run(c, tmp_path, total_steps=20, log_every_steps=10)
  assert rows[-1]["train/loss"] < rows[0]["train/loss"], rows
  lanes = sum(int(lanes_demo.render("val", i)[2].sum()) for i in range(6))
  assert result["lanes/tp"] + result["lanes/fn"] == lanes
  assert 0 <= result["lanes/f1"] <= 1
