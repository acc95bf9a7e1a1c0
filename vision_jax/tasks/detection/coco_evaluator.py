"""COCO box AP and AR over a whole split, as pycocotools' COCOeval reports them.

Lin et al., "Microsoft COCO: Common Objects in Context" (2014), detection
metrics: AP averaged over IoU 0.50:0.05:0.95 and categories (101-point
interpolated precision), AP50, AP75, AP by object area (small < 32^2 <= medium
< 96^2 <= large), and AR given 1, 10, 100 detections per image and by area.

Predictions (the task's, over the whole global batch) are mapped back to the
original image as mmdetection does with `rescale=True`: x / scale[1],
y / scale[0]; xyxy becomes COCO's xywh and contiguous classes the dataset's
original category ids. Every image of the split stays in the ground truth, so
an image the pipeline skipped (unreadable record) counts as all misses; the
number is reported as `skipped_examples`. When the task caps the (box, class)
pairs entering NMS and an image's result may differ from uncapped NMS, the
number of such images is reported as `nms_capped_images` (and logged).
"""
import contextlib
import io
import json
import os
from typing import Callable

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vision_jax.batch import (BOXES, CLASSES, IMAGE, IMAGE_ID, IMAGE_SCALE, MASK, RECORD,
                              SKIPPED)
from vision_jax import files as workdir_files
from vision_jax.data import ground_truth, pipeline, sources
from vision_jax.evaluators.base import Evaluator
from vision_jax.tasks.detection import pictures as pictures_lib

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")  # The order of COCOeval.stats.


def load_ground_truth(spec: pipeline.DataSpec) -> tuple[dict, list[int], list[str]]:
  """(COCO ground-truth dict, original id of each contiguous class, class names)."""
  gt, category_ids, class_names = ground_truth.load(spec.name, spec.split, spec.data_dir)
  return gt, [int(c) for c in category_ids], [str(n) for n in class_names]


def ground_truth_file(spec: pipeline.DataSpec) -> str | None:
  """The instances json a COCO-layout folder's ground truth is (unchanged), if any:
  `ground_truth.load` returns a whole split's json as is, a sliced split's rebuilt."""
  root = sources.coco_root(spec.name, spec.data_dir)
  if root is None or "[" in spec.split:
    return None
  path = os.path.join(root, "annotations", f"instances_{spec.split}.json")
  return path if os.path.isfile(path) else None


def original_boxes(boxes: np.ndarray, scale: np.ndarray) -> np.ndarray:
  """xyxy [..., D, 4] in the resized frame -> original frame (float64), given
  `scale` [..., 2] = (new_h / orig_h, new_w / orig_w)."""
  scale = np.asarray(scale, np.float64)
  return np.asarray(boxes, np.float64) / np.stack([scale[..., 1], scale[..., 0]] * 2, -1)[..., None, :]


def to_coco_results(out: dict, rows: np.ndarray, category_ids: list[int]) -> list[dict]:
  """COCO results (original frame, xywh, original category ids) of batch `rows`."""
  boxes = original_boxes(np.asarray(out[BOXES])[rows], np.asarray(out[IMAGE_SCALE])[rows])
  scores = np.asarray(out["scores"], np.float64)[rows]
  classes = np.asarray(out[CLASSES])[rows]
  image_ids = np.asarray(out[IMAGE_ID])[rows]
  if np.any(classes >= len(category_ids)):
    raise ValueError(f"Predicted class {int(classes.max())} but the dataset has "
                     f"{len(category_ids)} classes.")
  ids = np.asarray(category_ids)
  results = []
  for i, k in zip(*np.nonzero(classes >= 0)):
    x1, y1, x2, y2 = boxes[i, k].tolist()
    results.append({"image_id": int(image_ids[i]), "category_id": int(ids[classes[i, k]]),
                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[i, k])})
  return results


def coco_eval(gt: dict, results: list[dict]) -> tuple[np.ndarray, str]:
  """(the 12 COCOeval bbox stats, its printed summary) with pycocotools' chatter muted.

  No detections at all gives zeros: pycocotools' `loadRes` cannot take an
  empty list.
  """
  if not results:
    return np.zeros(len(STAT_NAMES)), "No detections: every AP and AR is 0."
  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO()  # COCOeval marks annotations "ignore": leave the caller's dicts alone.
    coco_gt.dataset = {**gt, "annotations": [dict(a) for a in gt.get("annotations", [])]}
    coco_gt.createIndex()
    evaluation = COCOeval(coco_gt, coco_gt.loadRes(results), iouType="bbox")
    evaluation.evaluate()
    evaluation.accumulate()
  summary = io.StringIO()
  with contextlib.redirect_stdout(summary):
    evaluation.summarize()
  return np.asarray(evaluation.stats, np.float64), summary.getvalue().rstrip()


class CocoEvaluator(Evaluator):
  """COCO bbox AP/AR of `predict_fn` over the `data` split.

  `predict_fn(variables, local_batch)` returns host arrays over the global
  batch: "boxes" [B, D, 4] xyxy in the resized frame, "scores" [B, D],
  "classes" [B, D] (-1: no detection), "image/id" [B], "image/scale" [B, 2]
  and the batch's "mask" and "skipped". All processes run the predictions;
  process 0 evaluates and writes, and its numbers are sent to the others.

  With `workdir`, writes `<workdir>/eval/<split>_detections.json` (COCO
  results) and, unless the ground truth is already a file (a COCO folder's
  instances json), `<workdir>/eval/<split>_ground_truth.json`; `self.files`
  names both, so pycocotools can be rerun on exactly what was evaluated.
  After `run`, `pictures()` draws the first `num_pictures` images.
  """
  NEEDS_WORKDIR = True

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, workdir: str | None = None,
               num_pictures: int = 8, score_threshold_pictures: float = 0.3):
    super().__init__(predict_fn, data=data)
    self.workdir = workdir
    self.num_pictures, self.score_threshold_pictures = num_pictures, score_threshold_pictures
    self.files: dict[str, str] = {}
    self._ground_truth: tuple | None = None  # Loaded once, on the first run().
    self._shown: dict | None = None  # Record index -> its detections, for pictures().

  def _split_name(self) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.data.split)

  def check(self) -> dict:
    """Opens the split, preprocesses one record and loads the ground truth
    (before training starts, so a missing annotation file fails then)."""
    template = pipeline.check(self.data)
    if self._ground_truth is None:
      self._ground_truth = load_ground_truth(self.data)
    return template

  def run(self, variables) -> dict[str, float]:
    if self._ground_truth is None:
      self._ground_truth = load_ground_truth(self.data)
    gt, category_ids, _ = self._ground_truth
    num_examples, batches = pipeline.eval_batches(self.data)
    results, seen_ids, shown = [], set(), {}
    counted = skipped = 0
    capped = None  # Images whose NMS may differ from uncapped NMS; None: the task has no cap.
    for batch in batches:
      out = self.predict_fn(variables, batch)
      mask = np.asarray(out[MASK]) > 0
      rows = np.nonzero(mask)[0]
      if "nms_exact" in out:
        capped = (capped or 0) + int(np.sum(~np.asarray(out["nms_exact"], bool)[rows]))
      ids = [int(i) for i in np.asarray(out[IMAGE_ID])[rows]]
      if len(set(ids)) < len(ids) or seen_ids.intersection(ids):
        raise RuntimeError(f"Image ids {sorted(seen_ids.intersection(ids) or ids)[:5]} of "
                           f"{self.data.split!r} were predicted twice.")
      seen_ids.update(ids)
      results.extend(to_coco_results(out, rows, category_ids))
      records = out[RECORD] if RECORD in out else batch[RECORD]  # A host predictor's may lack it.
      for row, record in enumerate(np.asarray(records)):
        if 0 <= record < min(self.num_pictures, num_examples):
          shown[int(record)] = _kept_detections(out, row) if mask[row] else None
      counted += int(mask.sum())
      skipped += int(np.sum(out[SKIPPED]))
    if counted + skipped != num_examples:
      raise RuntimeError(f"Evaluated {counted} (+{skipped} skipped) examples of "
                         f"{self.data.split!r}, expected {num_examples}.")
    gt_ids = {int(image["id"]) for image in gt["images"]}
    if len(gt_ids) != num_examples or not seen_ids <= gt_ids:
      raise ValueError(f"The ground truth of {self.data.split!r} has {len(gt_ids)} images but the "
                       f"split {num_examples} records; {len(seen_ids - gt_ids)} predicted image "
                       f"ids are not in it.")
    self._shown = shown
    stats = self._evaluate(gt, results)
    metrics = {name: float(v) for name, v in zip(STAT_NAMES, stats)}
    if skipped:
      metrics["skipped_examples"] = float(skipped)
    if capped is not None:
      metrics["nms_capped_images"] = float(capped)
    if capped:
      logging.warning("%d of %d images of %s:%s had more NMS candidates than the task's "
                      "max_nms_candidates: their detections may differ from uncapped NMS.",
                      capped, counted, self.data.name, self.data.split)
    return metrics

  def _evaluate(self, gt: dict, results: list[dict]) -> np.ndarray:
    """Process 0 writes the files and runs COCOeval; every process gets its stats."""
    stats = np.zeros(len(STAT_NAMES))
    if jax.process_index() == 0:
      if self.workdir:
        self._write(gt, results)
      stats, summary = coco_eval(gt, results)
      logging.info("COCO bbox eval of %s:%s, %d detections on %d images:\n%s", self.data.name,
                   self.data.split, len(results), len(gt["images"]), summary)
    if jax.process_count() > 1:
      shared = np.asarray(multihost_utils.broadcast_one_to_all(stats.astype(np.float32)))
      stats = stats if jax.process_index() == 0 else shared
    return stats

  def _write(self, gt: dict, results: list[dict]) -> None:
    eval_dir = os.path.join(self.workdir, "eval")
    split = self._split_name()
    self.files["detections"] = os.path.join(eval_dir, f"{split}_detections.json")
    workdir_files.write_atomic(self.files["detections"], json.dumps(results))
    if "ground_truth" not in self.files:  # Once per evaluator: it is the same every run.
      self.files["ground_truth"] = ground_truth_file(self.data) or os.path.join(
          eval_dir, f"{split}_ground_truth.json")
      if not ground_truth_file(self.data):
        workdir_files.write_atomic(self.files["ground_truth"], json.dumps(gt))
    logging.info("Wrote %s (ground truth: %s).", self.files["detections"],
                 self.files["ground_truth"])

  def pictures(self) -> dict[str, np.ndarray]:
    """{"detections/<image_id>": uint8 [H, W, 3]} of the split's first records in
    their original size: predictions scoring >= `score_threshold_pictures` with
    class names and scores, ground truth dashed."""
    if self._shown is None:
      raise RuntimeError("Call run() before pictures().")
    source = sources.open_source(self.data.name, self.data.split, self.data.data_dir, ("image",))
    gt, _, class_names = self._ground_truth
    out = {}
    for index in sorted(self._shown):
      try:
        record = source[index]
        with Image.open(io.BytesIO(record[IMAGE])) as img:
          image = np.asarray(img.convert("RGB"))
      except Exception as e:  # pylint: disable=broad-except
        logging.warning("No picture of record %d (%s: %s).", index, type(e).__name__, e)
        continue
      image_id = int(record[IMAGE_ID])
      kept = self._shown[index] or _kept_detections(None, 0)  # None: a skipped record.
      keep = kept["scores"] >= self.score_threshold_pictures
      out[f"detections/{image_id}"] = pictures_lib.draw_detections(
          image, kept[BOXES][keep], kept[CLASSES][keep], kept["scores"][keep], class_names,
          gt_boxes=_gt_boxes(gt, image_id))
    return out


def _kept_detections(out: dict | None, row: int) -> dict:
  """One image's detections in the original frame (xyxy), padding dropped;
  none for `out=None`."""
  if out is None:
    return {"boxes": np.zeros((0, 4)), "classes": np.zeros((0,), np.int32), "scores": np.zeros(0)}
  valid = np.asarray(out[CLASSES][row]) >= 0
  boxes = original_boxes(np.asarray(out[BOXES][row]), np.asarray(out[IMAGE_SCALE][row]))
  return {"boxes": boxes[valid], "classes": np.asarray(out[CLASSES][row])[valid],
          "scores": np.asarray(out["scores"][row], np.float64)[valid]}


def _gt_boxes(gt: dict, image_id: int) -> np.ndarray:
  """The ground-truth boxes of one image, xyxy in the original frame; malformed ones left out."""
  boxes = []
  for ann in gt.get("annotations", []):
    bbox = ann.get("bbox")
    if ann.get("image_id") == image_id and isinstance(bbox, list) and len(bbox) == 4:
      x, y, w, h = bbox
      boxes.append([x, y, x + w, y + h])
  return np.asarray(boxes, np.float64).reshape(-1, 4)
