"""Lane detection as SCNN trains it (Pan et al., AAAI 2018; official Lua
models/init.lua and the PyTorch port's model.py):

  loss = CE_w(logits, segmentation) + 0.1 BCE(sigmoid(exist), lanes/exist)

CE_w is PyTorch's nn.CrossEntropyLoss(weight=[0.4, 1, 1, 1, 1],
ignore_index=255): the class-weighted mean sum_p w[y_p] CE_p / sum_p w[y_p]
over the labelled pixels; BCE is nn.BCELoss's mean over examples x lanes.
Both denominators are normalizers summed over the global batch, so under
gradient accumulation the micro-batches' losses add up to the batch's.

Predictions: per-lane probability maps (softmax channels 1..4, smoothed by the
official 9x9 box filter) and existence probabilities; "lane_rows" keeps only
the 18 rows prob2lines reads (`decode`), which is what the CULane evaluator
copies to the host.
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from vision_jax.batch import LANE_EXIST, LANE_POINTS, MASK, SEGMENTATION
from vision_jax.tasks.base import Task
from vision_jax.tasks.lanes import decode


class LaneTask(Task):
  """Loss and predictions for a model returning {"logits": [B, H, W, C]
  (C = background + lanes, at the label's size), "exist": [B, C - 1] logits}."""

  def __init__(self, class_weights: Sequence[float] = (0.4, 1.0, 1.0, 1.0, 1.0),
               exist_weight: float = 0.1, ignore_label: int = 255, smooth_size: int = 9,
               original_size: Sequence[int] = decode.CULANE_SIZE,
               num_rows: int = decode.NUM_ROWS, row_gap: int = decode.ROW_GAP):
    self.class_weights = tuple(float(w) for w in class_weights)
    self.exist_weight, self.ignore_label = exist_weight, ignore_label
    self.smooth_size = smooth_size
    self.original_size, self.num_rows, self.row_gap = tuple(original_size), num_rows, row_gap

  @property
  def num_classes(self) -> int:
    return len(self.class_weights)

  def check(self, model) -> None:
    """A model that declares its classes has the task's (background + lanes)."""
    classes = getattr(model, "num_classes", self.num_classes)
    lanes = getattr(model, "num_lanes", self.num_classes - 1)
    if classes != self.num_classes or lanes != self.num_classes - 1:
      raise ValueError(f"The lane task has {self.num_classes} classes (class_weights) and "
                       f"{self.num_classes - 1} lanes; the model {type(model).__name__} has "
                       f"num_classes={classes}, num_lanes={lanes}.")

  def _pixel_weights(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    """(labels int32 [B, H, W] with ignored pixels as 0, weights w[y] [B, H, W],
    0 on ignored pixels and padding examples)."""
    seg = batch[SEGMENTATION].astype(jnp.int32)
    valid = (seg != self.ignore_label) & (seg < self.num_classes)
    labels = jnp.where(valid, seg, 0)
    mask = batch[MASK].astype(jnp.float32)[:, None, None]
    weights = jnp.asarray(self.class_weights, jnp.float32)[labels] * valid * mask
    return labels, weights

  def normalizers(self, aux: dict, batch: dict) -> dict:
    """sum of w[y] over the labelled pixels of real examples, and the number of
    real examples (the BCE mean divides by it x lanes)."""
    del aux
    return {"pixel_weight": jnp.sum(self._pixel_weights(batch)[1]),
            "examples": jnp.sum(batch[MASK].astype(jnp.float32))}

  def loss(self, outputs: dict, aux: dict, batch: dict,
           normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    """Weighted CE + exist_weight BCE over `normalizers` (the step's; default
    this batch's), with seg_loss, exist_loss and exist_accuracy as shares."""
    logits, exist_logits = outputs["logits"], outputs["exist"]
    if logits.shape[:3] != batch[SEGMENTATION].shape or logits.shape[-1] != self.num_classes:
      raise ValueError(f"Logits {logits.shape} do not match labels "
                       f"{batch[SEGMENTATION].shape} x {self.num_classes} classes.")
    normalizers = normalizers or self.normalizers(aux, batch)
    labels, weights = self._pixel_weights(batch)
    log_p = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ce = -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    seg_loss = jnp.sum(ce * weights) / jnp.maximum(normalizers["pixel_weight"], 1e-12)

    target = batch[LANE_EXIST].astype(jnp.float32)
    z = exist_logits.astype(jnp.float32)
    bce = -(target * jax.nn.log_sigmoid(z) + (1.0 - target) * jax.nn.log_sigmoid(-z))
    mask = batch[MASK].astype(jnp.float32)[:, None]
    entries = jnp.maximum(normalizers["examples"], 1.0) * z.shape[-1]
    exist_loss = jnp.sum(bce * mask) / entries
    correct = ((z > 0) == (target > 0.5)).astype(jnp.float32)
    loss = seg_loss + self.exist_weight * exist_loss
    return loss, {"loss": loss, "seg_loss": seg_loss, "exist_loss": exist_loss,
                  "exist_accuracy": jnp.sum(correct * mask) / entries}

  def _maps(self, outputs: dict) -> tuple[jax.Array, jax.Array]:
    probs = jax.nn.softmax(outputs["logits"].astype(jnp.float32), axis=-1)[..., 1:]
    return decode.smooth(probs, self.smooth_size), jax.nn.sigmoid(outputs["exist"])

  def _ground_truth(self, batch: dict) -> dict:
    return {LANE_POINTS: batch[LANE_POINTS]} if LANE_POINTS in batch else {}

  def predict(self, outputs: dict, aux: dict, batch: dict) -> dict:
    """"lane_probs" [B, H, W, lanes] (smoothed), "exist_probs" [B, lanes], and
    the batch's ground-truth lanes/points if it has them."""
    del aux
    probs, exist = self._maps(outputs)
    return {"lane_probs": probs, "exist_probs": exist, **self._ground_truth(batch)}

  def lane_rows(self, outputs: dict, aux: dict, batch: dict) -> dict:
    """As `predict` with only the rows prob2lines samples: "lane_rows" [B, R, W, lanes]."""
    del aux
    probs, exist = self._maps(outputs)
    rows = decode.sample_rows(probs.shape[1], self.original_size[0], self.num_rows, self.row_gap)
    return {"lane_rows": probs[:, rows], "exist_probs": exist, **self._ground_truth(batch)}

  def predict_fns(self) -> dict:
    return {"predict": self.predict, "lane_rows": self.lane_rows}

  def default_evaluators(self) -> dict:
    return {"culane": {"kind": "lane_f1"}}
