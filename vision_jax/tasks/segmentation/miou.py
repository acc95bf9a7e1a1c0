"""mIoU, mAcc and aAcc over a whole split, as mmsegmentation 0.x computes them
(`mmseg.core.evaluation.metrics`): per class, areas accumulated over the
dataset, then IoU_c = |P_c & L_c| / |P_c | L_c| and Acc_c = |P_c & L_c| / |L_c|
over the pixels whose label is not `ignore_index`; mIoU and mAcc are the
means over the classes where they are defined (a class absent from both the
labels and the predictions has IoU NaN and is left out); aAcc = sum_c
|P_c & L_c| / sum_c |L_c|.

The confusion matrix is summed on the devices that hold the predictions
(`Evaluator.reduced`): no per-pixel prediction reaches a host, except the
few images `pictures()` draws.
"""
from typing import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from vision_jax.batch import MASK
from vision_jax.data import pipeline
from vision_jax.evaluators.base import Evaluator
from vision_jax.tasks.segmentation import pictures as pictures_lib


def confusion_matrix(label: jnp.ndarray, prediction: jnp.ndarray, num_classes: int,
                     ignore_index: int = 255, weight: jnp.ndarray | None = None) -> jnp.ndarray:
  """int32 [C, C]: counts of (label, predicted) class pairs over the pixels
  whose label is a class (not `ignore_index`, below `num_classes`)."""
  label, prediction = label.astype(jnp.int32), prediction.astype(jnp.int32)
  valid = (label != ignore_index) & (label < num_classes) & (prediction < num_classes)
  if weight is not None:
    valid = valid & (weight > 0)
  index = jnp.where(valid, label * num_classes + prediction, 0).reshape(-1)
  counts = jnp.zeros(num_classes * num_classes, jnp.int32).at[index].add(
      valid.reshape(-1).astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def scores(confusion: np.ndarray) -> dict[str, np.ndarray | float]:
  """Per-class IoU and Acc (NaN where undefined) and their means, aAcc."""
  confusion = np.asarray(confusion, np.float64)
  intersect = np.diag(confusion)
  area_label, area_prediction = confusion.sum(1), confusion.sum(0)
  union = area_label + area_prediction - intersect
  with np.errstate(divide="ignore", invalid="ignore"):
    iou = intersect / union
    acc = intersect / area_label
  defined = lambda v: float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")
  total = area_label.sum()
  return {"iou": iou, "acc": acc, "mIoU": defined(iou), "mAcc": defined(acc),
          "aAcc": float(intersect.sum() / total) if total else float("nan")}


class MIoUEvaluator(Evaluator):
  """"mIoU", "mAcc", "aAcc" and "IoU/<class>" of the task's predictions
  ("prediction" and "label" maps on the label canvas), plus `pictures()`:
  the first `num_pictures` images beside their predicted and true masks."""

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, num_classes: int,
               ignore_index: int = 255, class_names: Sequence[str] | None = None,
               num_pictures: int = 4, per_class: bool = True):
    super().__init__(predict_fn, data=data)
    if class_names is not None and len(class_names) != num_classes:
      raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes.")
    self.num_classes, self.ignore_index = num_classes, ignore_index
    self.class_names = list(class_names) if class_names else [str(c) for c in range(num_classes)]
    self.num_pictures, self.per_class = num_pictures, per_class
    self.last: dict | None = None
    self._shown: list | None = None

  def confusion(self, out: dict) -> dict:
    """The batch's confusion matrix over its real examples (on device)."""
    real = out[MASK][:, None, None] * jnp.ones(out["label"].shape, jnp.float32)
    return {"confusion": confusion_matrix(out["label"], out["prediction"], self.num_classes,
                                          self.ignore_index, real)}

  def run(self, variables) -> dict[str, float]:
    totals = self.reduced(variables, self.confusion)
    self.last = scores(totals["confusion"])
    self.last["confusion"] = np.asarray(totals["confusion"])
    out = {name: self.last[name] for name in ("mIoU", "mAcc", "aAcc")}
    if self.per_class:
      out.update({f"IoU/{n}": float(v) for n, v in zip(self.class_names, self.last["iou"])
                  if not np.isnan(v)})
    out["skipped_examples"] = float(totals["skipped"])
    self._shown = self._predictions_to_show(variables) if self.num_pictures else []
    return out

  def _predictions_to_show(self, variables) -> list[dict]:
    """Host predictions of the first `num_pictures` real examples, with their
    positions in the split."""
    shown = []
    _, batches = pipeline.eval_batches(self.data)
    for number, batch in enumerate(batches):
      out = self.predict_fn(variables, batch)
      for row in np.flatnonzero(np.asarray(out[MASK]) > 0):
        shown.append({"index": number * self.data.global_batch + int(row),
                      "prediction": np.asarray(out["prediction"][row]),
                      "label": np.asarray(out["label"][row])})
        if len(shown) == self.num_pictures:
          return shown
    return shown

  def pictures(self) -> dict[str, np.ndarray]:
    """{"segmentation/<index>": image over prediction overlay over label overlay}, by
    the image's position in the split."""
    if self._shown is None:
      raise RuntimeError("Call run() before pictures().")
    return {f"segmentation/{item['index']:05d}": pictures_lib.side_by_side(
        pictures_lib.original_image(self.data, item["index"]), item["prediction"], item["label"],
        self.ignore_index) for item in self._shown}
