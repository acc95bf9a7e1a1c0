"""CocoEvaluator: pycocotools' numbers on the files it writes, boxes mapped back to the original frame."""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vision_jax.data import pipeline, sources
from vision_jax.tasks.detection import coco_evaluator as coco_eval

CANVAS, MAX_BOXES, DETECTIONS = 64, 8, 100
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}, {"id": 11, "name": "kite"}]
# (image id, height, width, [(category id, x, y, w, h, is_crowd), ...]) in the original frame.
IMAGES = [
    (101, 40, 60, [(3, 4, 6, 20, 14, 0), (11, 30, 10, 25, 25, 0)]),
    (205, 50, 30, [(7, 2, 3, 20, 40, 0), (3, 10, 12, 8, 9, 0), (7, 0, 0, 30, 50, 1)]),
    (307, 32, 32, [(11, 5, 5, 22, 20, 0)]),
    (412, 64, 48, [(3, 1, 2, 40, 30, 0), (7, 20, 30, 26, 32, 0), (11, 8, 40, 10, 12, 0)]),
    (520, 30, 70, [(7, 40, 4, 28, 22, 0)]),
    (630, 100, 120, [(11, 5, 5, 110, 90, 0), (3, 60, 10, 20, 30, 0)]),
]  # Objects of all three COCO area ranges (small < 32^2 <= medium < 96^2 <= large).
PP = (f"decode(channels=3)|coco_objects|resize_keep_ratio({CANVAS}, {CANVAS})|normalize|"
      f"pad_to({CANVAS}, {CANVAS})|pad_boxes({MAX_BOXES})|"
      "keep('image', 'boxes', 'classes', 'image/id', 'image/scale', 'image/size')")


def write_coco_folder(root: str, split: str = "val", corrupt=()) -> str:
  """A COCO-format folder: <root>/<split>/<id>.png and annotations/instances_<split>.json."""
  rng = np.random.default_rng(0)
  os.makedirs(os.path.join(root, split))
  os.makedirs(os.path.join(root, "annotations"))
  images, annotations = [], []
  for image_id, h, w, objects in IMAGES:
    name = f"{image_id}.png"
    with open(os.path.join(root, split, name), "wb") as f:
      if image_id in corrupt:
        f.write(b"not an image")
      else:
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(f, "PNG")
    images.append({"id": image_id, "file_name": name, "height": h, "width": w})
    for cat, x, y, bw, bh, crowd in objects:
      annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                          "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": crowd})
  with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as f:
    json.dump({"images": images, "annotations": annotations, "categories": CATEGORIES}, f)
  return root


@pytest.fixture
def folder(tmp_path):
  """make(corrupt=(), global_batch=4) -> DataSpec of a fresh COCO folder, read through
  data/coco.py and the detection pp ops."""
  count = iter(range(100))

  def make(corrupt=(), global_batch=4):
    root = write_coco_folder(str(tmp_path / f"coco{next(count)}"), corrupt=corrupt)
    return pipeline.DataSpec(name="coco_folder", split="val", pp=PP, global_batch=global_batch,
                             data_dir=root)
  return make


def _padded(batch: dict) -> dict:
  """The batch's own GT as predictions: score 1, DETECTIONS rows per image."""
  b = len(batch["mask"])
  boxes = np.zeros((b, DETECTIONS, 4), np.float32)
  classes = np.full((b, DETECTIONS), -1, np.int32)
  boxes[:, :MAX_BOXES], classes[:, :MAX_BOXES] = batch["boxes"], batch["classes"]
  return {"boxes": boxes, "classes": classes, "scores": (classes >= 0).astype(np.float32),
          "image/id": np.array(batch["image/id"]), "image/scale": np.array(batch["image/scale"]),
          "mask": np.array(batch["mask"]), "skipped": np.array(batch["skipped"])}


def oracle(variables, batch):
  del variables
  return _padded(batch)


def stretched_oracle(swap: bool):
  """The exact GT in a frame stretched 2x in x and 0.5x in y: a right mapping undoes it
  with the returned per-axis scale; `swap` returns that scale as (w, h)."""
  def predict(variables, batch):
    out = _padded(batch)
    out["boxes"] = out["boxes"] * np.asarray([2.0, 0.5, 2.0, 0.5], np.float32)
    scale = out["image/scale"] * np.asarray([0.5, 2.0], np.float32)
    out["image/scale"] = scale[:, ::-1] if swap else scale
    return out
  return predict


def noisy(variables, batch):
  """GT jittered, random scores, some false positives, some boxes dropped."""
  del variables
  out = _padded(batch)
  rng = np.random.default_rng(int(np.sum(batch["image/id"])))
  real = out["classes"] >= 0
  out["boxes"] = np.where(real[..., None], out["boxes"] + rng.normal(0, 0.7, out["boxes"].shape), 0)
  dropped = real & (np.arange(DETECTIONS) == 1) & (out["image/id"] % 2 == 1)[:, None]
  out["classes"] = np.where(dropped, -1, out["classes"])  # The 2nd object of odd ids is missed.
  fp = slice(MAX_BOXES, MAX_BOXES + 5)
  xy = rng.uniform(0, 40, out["boxes"][:, fp, :2].shape)
  out["boxes"][:, fp] = np.concatenate([xy, xy + rng.uniform(4, 20, xy.shape)], -1)
  out["classes"][:, fp] = rng.integers(0, 3, out["classes"][:, fp].shape)
  out["scores"] = np.where(out["classes"] >= 0, rng.random(real.shape), 0).astype(np.float32)
  out["boxes"] = out["boxes"].astype(np.float32)
  return out


def _pycocotools(gt_file: str, dt_file: str) -> np.ndarray:
  gt = COCO(gt_file)
  evaluation = COCOeval(gt, gt.loadRes(dt_file), "bbox")
  evaluation.evaluate()
  evaluation.accumulate()
  evaluation.summarize()
  return evaluation.stats


def test_same_stats_as_pycocotools_on_the_written_files(folder, tmp_path):
  evaluator = coco_eval.CocoEvaluator(noisy, data=folder(), workdir=str(tmp_path / "work"))
  metrics = evaluator.run({})
  assert evaluator.files["detections"] == str(tmp_path / "work" / "eval" / "val_detections.json")
  stats = _pycocotools(evaluator.files["ground_truth"], evaluator.files["detections"])
  assert [metrics[k] for k in coco_eval.STAT_NAMES] == [float(s) for s in stats]
  assert 0.2 < metrics["AP"] < 0.95 and min(metrics.values()) > 0  # All 12 carry information.
  with open(evaluator.files["detections"]) as f:
    detections = json.load(f)
  assert {d["category_id"] for d in detections} == {3, 7, 11}
  assert {d["image_id"] for d in detections} <= {i[0] for i in IMAGES}
  assert "skipped_examples" not in metrics
  assert not [f for f in os.listdir(tmp_path / "work" / "eval") if f.endswith(".tmp")]


def test_the_ground_truth_of_a_sliced_split_is_written(folder, tmp_path):
  data = folder()
  data = pipeline.DataSpec(**{**data.__dict__, "split": "val[1:4]"})
  evaluator = coco_eval.CocoEvaluator(noisy, data=data, workdir=str(tmp_path / "work"))
  metrics = evaluator.run({})
  assert evaluator.files["ground_truth"] == str(tmp_path / "work" / "eval" / "val_1_4__ground_truth.json")
  stats = _pycocotools(evaluator.files["ground_truth"], evaluator.files["detections"])
  assert [metrics[k] for k in coco_eval.STAT_NAMES] == [float(s) for s in stats]
  with open(evaluator.files["ground_truth"]) as f:
    assert [im["id"] for im in json.load(f)["images"]] == [i[0] for i in IMAGES[1:4]]
  assert evaluator.run({}) == metrics  # Again, from the cached ground truth,
  shared = coco_eval.load_ground_truth(data)[0]  # which COCOeval has not marked.
  assert shared["annotations"] and not any("ignore" in a for a in shared["annotations"])


def test_ground_truth_with_other_images_raises(folder, monkeypatch):
  data = folder()
  gt, ids, names = coco_eval.load_ground_truth(data)
  extra = {**gt, "images": gt["images"] + [{"id": 999, "width": 10, "height": 10, "file_name": "x"}]}
  monkeypatch.setattr(coco_eval, "load_ground_truth", lambda spec: (extra, ids, names))
  with pytest.raises(ValueError, match=f"{len(IMAGES) + 1} images but the split {len(IMAGES)} records"):
    coco_eval.CocoEvaluator(oracle, data=data).run({})


def test_only_process_zero_evaluates_and_writes(folder, tmp_path, monkeypatch):
  data = folder()
  data = pipeline.DataSpec(**{**data.__dict__, "shard": (0, 1)})  # The pipeline's view: one process.
  monkeypatch.setattr(coco_eval.jax, "process_index", lambda: 1)
  monkeypatch.setattr(coco_eval.jax, "process_count", lambda: 2)
  monkeypatch.setattr(coco_eval.multihost_utils, "broadcast_one_to_all",
                      lambda x: np.full_like(x, 0.25))
  evaluator = coco_eval.CocoEvaluator(oracle, data=data, workdir=str(tmp_path / "work"))
  assert set(evaluator.run({}).values()) == {0.25}
  assert not os.path.exists(tmp_path / "work")


def test_exact_boxes_give_perfect_ap(folder):
  metrics = coco_eval.CocoEvaluator(oracle, data=folder()).run({})
  assert metrics["AP"] == metrics["AP50"] == metrics["AP75"] == metrics["AR100"] == 1.0


def test_per_axis_scale_is_undone_and_a_transposed_scale_fails(folder):
  data = folder()
  assert coco_eval.CocoEvaluator(stretched_oracle(swap=False), data=data).run({})["AP"] == 1.0
  assert coco_eval.CocoEvaluator(stretched_oracle(swap=True), data=data).run({})["AP"] < 0.2


def test_original_boxes_divides_x_by_width_scale():
  boxes = np.asarray([[[10.0, 20.0, 30.0, 40.0]]])
  np.testing.assert_allclose(coco_eval.original_boxes(boxes, np.asarray([[2.0, 0.5]])),
                             [[[20.0, 10.0, 60.0, 20.0]]])


def test_no_detections_give_zero_ap(folder, tmp_path):
  def nothing(variables, batch):
    out = oracle(variables, batch)
    out["classes"][:] = -1
    out["scores"][:] = 0
    return out
  evaluator = coco_eval.CocoEvaluator(nothing, data=folder(), workdir=str(tmp_path / "work"))
  metrics = evaluator.run({})
  assert set(metrics) == set(coco_eval.STAT_NAMES)
  assert all(v == 0.0 for v in metrics.values())
  with open(evaluator.files["detections"]) as f:
    assert json.load(f) == []


def test_padding_examples_are_ignored(folder):
  def junk_in_padding(variables, batch):
    out = oracle(variables, batch)
    pad = out["mask"] == 0
    out["image/id"][pad] = IMAGES[0][0]  # Would be a duplicate / false positives if counted.
    out["image/scale"][pad] = 1.0
    out["boxes"][pad, :3] = [[0, 0, 5, 5], [10, 10, 20, 30], [1, 1, 2, 2]]
    out["classes"][pad, :3], out["scores"][pad, :3] = 0, 1.0
    return out
  data = folder(global_batch=4)  # 6 images: 2 padding rows.
  assert coco_eval.CocoEvaluator(junk_in_padding, data=data).run({})["AP"] == 1.0


def test_count_mismatch_raises(folder):
  def drops_one(variables, batch):
    out = oracle(variables, batch)
    out["mask"] = np.asarray(out["mask"]).copy()
    out["mask"][0] = 0
    return out
  with pytest.raises(RuntimeError, match=f"expected {len(IMAGES)}"):
    coco_eval.CocoEvaluator(drops_one, data=folder()).run({})


def test_an_image_predicted_twice_raises(folder):
  def repeats(variables, batch):
    out = oracle(variables, batch)
    out["image/id"][:] = out["image/id"][0]
    return out
  with pytest.raises(RuntimeError, match="predicted twice"):
    coco_eval.CocoEvaluator(repeats, data=folder()).run({})


def test_skipped_images_stay_in_the_ground_truth_as_misses(folder):
  evaluator = coco_eval.CocoEvaluator(oracle, data=folder(corrupt={205}), num_pictures=3)
  metrics = evaluator.run({})
  assert metrics["skipped_examples"] == 1.0
  assert 0.5 < metrics["AP"] < 1.0  # Image 205's objects are missed.
  assert metrics["AR100"] < 1.0
  assert sorted(evaluator.pictures()) == ["detections/101", "detections/307"]


def test_pictures_are_the_first_images_at_original_size(folder):
  evaluator = coco_eval.CocoEvaluator(oracle, data=folder(), num_pictures=3)
  with pytest.raises(RuntimeError, match="run"):
    evaluator.pictures()
  evaluator.run({})
  pictures = evaluator.pictures()
  assert sorted(pictures) == sorted(f"detections/{i[0]}" for i in IMAGES[:3])
  for image_id, h, w, _ in IMAGES[:3]:
    picture = pictures[f"detections/{image_id}"]
    assert picture.shape == (h, w, 3) and picture.dtype == np.uint8
  # Image 307's box (5, 5, 27, 25) in the original frame: its outline is drawn (left
  # and bottom edges below the label tab), a pixel inside it is not.
  source = sources.open_source("coco_folder", "val", evaluator.data.data_dir, ("image",))
  raw = np.asarray(Image.open(io.BytesIO(source[2]["image"])).convert("RGB"))
  picture = pictures["detections/307"]
  assert (picture[22, 5] != raw[22, 5]).any() and (picture[24, 15] != raw[24, 15]).any()
  assert (picture[21, 16] == raw[21, 16]).all()


def test_images_whose_capped_nms_may_differ_are_counted_and_logged(folder, caplog):
  def capped(variables, batch):
    out = oracle(variables, batch)
    out["nms_exact"] = out["image/id"] % 2 == 1  # Ids 412, 520, 630 hit the cap.
    return out
  metrics = coco_eval.CocoEvaluator(capped, data=folder(global_batch=4)).run({})
  assert metrics["nms_capped_images"] == 3.0 and metrics["AP"] == 1.0
  assert "3 of 6 images of coco_folder:val had more NMS candidates" in caplog.text
  uncapped = coco_eval.CocoEvaluator(oracle, data=folder()).run({})
  assert "nms_capped_images" not in uncapped


def test_a_detection_task_reports_nms_exactness_only_with_a_cap():
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from vision_jax.tasks.detection.task import DetectionTask  # pylint: disable=import-outside-toplevel
  levels = ((8, 8), (4, 4), (2, 2), (1, 1), (1, 1))
  n = sum(h * w for h, w in levels) * 9
  rng = np.random.default_rng(0)
  outputs = {"cls": jnp.asarray(rng.normal(0, 3, (2, n, 3)), jnp.float32),
             "reg": jnp.asarray(rng.normal(0, 0.1, (2, n, 4)), jnp.float32)}
  batch = {"image/size": jnp.full((2, 2), 64, jnp.int32), "image/id": jnp.asarray([1, 2]),
           "image/scale": jnp.ones((2, 2))}
  exact = DetectionTask(num_classes=3).predict(outputs, {"levels": levels}, batch)
  assert "nms_exact" not in exact
  capped = DetectionTask(num_classes=3, max_nms_candidates=20).predict(
      outputs, {"levels": levels}, batch)
  assert not np.asarray(capped["nms_exact"]).any()  # ~1,400 pairs score > 0.05; 20 enter.
  assert (np.asarray(exact["classes"]) >= 0).sum(1).tolist() == [100, 100]
  assert (np.asarray(capped["classes"]) >= 0).sum(1).max() < 100


def per_image_noise(variables, batch):
  """GT jittered with random scores and a false positive, drawn from each image's id
  alone: the same detections whichever batch or canvas the image is in."""
  del variables
  out = _padded(batch)
  for row, image_id in enumerate(out["image/id"]):
    rng = np.random.default_rng(int(image_id))
    real = out["classes"][row] >= 0
    out["boxes"][row] = np.where(real[:, None], out["boxes"][row] + rng.normal(0, 0.7, (DETECTIONS, 4)), 0)
    out["boxes"][row, MAX_BOXES] = [3.0, 4.0, 20.0, 18.0]
    out["classes"][row, MAX_BOXES] = int(image_id) % 3
    out["scores"][row] = np.where(out["classes"][row] >= 0, rng.random(DETECTIONS), 0)
  return out


def test_aspect_ratio_canvases_give_the_single_canvas_detections(folder, tmp_path):
  """Landscape and square images on a 64x64 canvas, portrait ones on 64x48, in other
  batches and another order: the same detections, pictures and metrics."""
  single = folder(global_batch=2)
  grouped = pipeline.DataSpec(**{**single.__dict__, "canvases": ((64, 64), (64, 48)),
                                 "pp": PP.replace(f"pad_to({CANVAS}, {CANVAS})", "pad_to_canvas")})
  runs = {}
  for name, data in (("single", single), ("grouped", grouped)):
    evaluator = coco_eval.CocoEvaluator(per_image_noise, data=data, workdir=str(tmp_path / name),
                                        num_pictures=3)
    metrics = evaluator.run({})
    with open(evaluator.files["detections"]) as f:
      detections = sorted(json.load(f), key=lambda d: (d["image_id"], -d["score"]))
    runs[name] = metrics, detections, evaluator.pictures()
  (m1, d1, p1), (m2, d2, p2) = runs["single"], runs["grouped"]
  assert m1 == m2 and 0.2 < m1["AP"] < 0.95
  assert [(d["image_id"], d["category_id"]) for d in d1] == [(d["image_id"], d["category_id"]) for d in d2]
  np.testing.assert_allclose([d["bbox"] + [d["score"]] for d in d1],
                             [d["bbox"] + [d["score"]] for d in d2], atol=1e-4)
  assert sorted(p1) == sorted(p2) == [f"detections/{i[0]}" for i in IMAGES[:3]]
  for key in p1:
    np.testing.assert_array_equal(p1[key], p2[key])
