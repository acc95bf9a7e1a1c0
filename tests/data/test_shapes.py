"""shapes_demo: deterministic files, designed statistics, COCO validity, open_source."""
import contextlib
import filecmp
import io
import os

import numpy as np
import pytest
from PIL import Image

from vision_jax.data import ground_truth, pipeline, shapes, sources


@pytest.fixture
def small_splits(monkeypatch):
  monkeypatch.setattr(shapes, "SPLITS", {"train": 12, "val": 6})


def _objects(n=150, split="train"):
  rows = []
  for index in range(n):
    image, objects = shapes.render(split, index)
    rows.extend((image.shape[:2], o) for o in objects)
  return rows


def test_rendering_is_deterministic_and_seeded():
  a, objects_a = shapes.render("train", 5)
  b, objects_b = shapes.render("train", 5)
  assert shapes.png_bytes(a) == shapes.png_bytes(b) and objects_a == objects_b
  assert not np.array_equal(shapes.render("val", 5)[0][:20, :20], a[:20, :20])
  assert not np.array_equal(shapes.render("train", 5, seed=1)[0][:20, :20], a[:20, :20])


def test_written_files_are_the_same_bytes(tmp_path):
  for name in ("one", "two"):
    shapes.write_dataset(str(tmp_path / name), {"train": 6, "val": 3})
  compare = filecmp.dircmp(tmp_path / "one", tmp_path / "two")
  assert not compare.diff_files and not compare.left_only and not compare.right_only
  for sub in ("train", "annotations"):
    files = os.listdir(tmp_path / "one" / sub)
    _, mismatch, errors = filecmp.cmpfiles(tmp_path / "one" / sub, tmp_path / "two" / sub, files,
                                           shallow=False)
    assert not mismatch and not errors
  assert sorted(os.listdir(tmp_path / "one" / "val")) == ["000001.png", "000002.png", "000003.png"]


def test_statistics_as_designed():
  rows = _objects()
  sizes = np.array([max(o["bbox"][2:]) for _, o in rows])
  classes = np.bincount([o["category"] for _, o in rows], minlength=len(shapes.CLASSES))
  assert len(shapes.CLASSES) == 6 and classes.min() > 0.1 * len(rows)
  assert 0.05 < np.mean(sizes <= 12) < 0.25  # Tiny objects, but not too many.
  large = [o for (h, w), o in rows if max(o["bbox"][2:]) >= 0.45 * min(h, w)]
  assert len(large) > 0.02 * len(rows)
  hidden = np.array([o["hidden"] for _, o in rows])
  assert np.mean(hidden > 0.05) > 0.1 and hidden.max() <= shapes.MAX_HIDDEN
  for (h, w), o in rows:
    x, y, bw, bh = o["bbox"]
    assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and bw >= 1 and bh >= 1
    assert 0 < o["area"] <= bw * bh
  shapes_hw = {hw for hw, _ in rows}
  assert len(shapes_hw) > 50 and sum(h != w for h, w in shapes_hw) > 0.9 * len(shapes_hw)
  per_image = [len(shapes.render("val", i)[1]) for i in range(40)]
  assert min(per_image) >= 1 and max(per_image) <= shapes.OBJECTS_RANGE[1]


def test_annotated_pixels_have_the_object_colour():
  image, objects = shapes.render("train", 3)
  for o in objects:
    x, y, w, h = o["bbox"]
    patch = image[y:y + h, x:x + w].reshape(-1, 3).astype(int)
    # The most common colour (noise aside) covers at least the visible area's share.
    colours, counts = np.unique(patch // 16, axis=0, return_counts=True)
    assert counts.max() >= 0.3 * o["area"], (o, colours[counts.argmax()])


def test_json_loads_in_pycocotools(tmp_path):
  from pycocotools.coco import COCO
  shapes.write_dataset(str(tmp_path), {"val": 8})
  with contextlib.redirect_stdout(io.StringIO()):
    gt = COCO(str(tmp_path / "annotations" / "instances_val.json"))
  assert gt.getCatIds() == [1, 2, 3, 4, 5, 6]
  assert [c["name"] for c in gt.loadCats(gt.getCatIds())] == list(shapes.CLASSES)
  assert len(gt.getImgIds()) == 8 and len(gt.getAnnIds()) == sum(
      len(shapes.render("val", i)[1]) for i in range(8))
  image = gt.loadImgs(3)[0]
  with Image.open(tmp_path / "val" / image["file_name"]) as img:
    assert img.size == (image["width"], image["height"]) and img.mode == "RGB"


def test_open_source_prepares_once_and_reads_like_coco(tmp_path, small_splits):
  source = sources.open_source("shapes_demo", "val", str(tmp_path))
  root = tmp_path / "shapes_demo" / shapes.VERSION
  assert len(source) == 6 and (root / "train" / "000012.png").exists()
  assert source.class_names == list(shapes.CLASSES) and source.category_ids == [1, 2, 3, 4, 5, 6]
  record = source[0]
  _, objects = shapes.render("val", 0)
  assert record["objects"]["label"].tolist() == [o["category"] for o in objects]
  gt, ids, names = ground_truth.load("shapes_demo", "val", str(tmp_path))
  assert len(gt["images"]) == 6 and ids == [1, 2, 3, 4, 5, 6] and names == list(shapes.CLASSES)
  assert [p for p in os.listdir(root.parent) if p != shapes.VERSION] == []  # No temp dirs left.
  spec = pipeline.DataSpec(name="shapes_demo", split="train", global_batch=4, data_dir=str(tmp_path),
                           pp="decode(channels=3)|coco_objects|resize_keep_ratio(128, 160)"
                              "|flip_lr_boxes|normalize(0.5, 0.5)|pad_to(160, 160)|pad_boxes(8)")
  data = pipeline.TrainData(spec)
  batch = next(iter(data))
  assert batch["image"].shape == (4, 160, 160, 3) and batch["mask"].tolist() == [1.0] * 4
  assert (batch["classes"] >= 0).sum() >= 4


def test_losing_a_preparation_race_is_harmless(tmp_path, small_splits, monkeypatch):
  winner = shapes.ShapesDemo(str(tmp_path))
  winner.download_and_prepare()
  before = (tmp_path / "shapes_demo" / shapes.VERSION / "annotations" / "instances_val.json").stat()
  loser = shapes.ShapesDemo(str(tmp_path))
  answers = iter([False, True])  # Not prepared when it looked, prepared when it renames.
  monkeypatch.setattr(loser, "is_prepared", lambda: next(answers))
  loser.download_and_prepare()
  after = (tmp_path / "shapes_demo" / shapes.VERSION / "annotations" / "instances_val.json").stat()
  assert before.st_mtime_ns == after.st_mtime_ns
  assert os.listdir(tmp_path / "shapes_demo") == [shapes.VERSION]
