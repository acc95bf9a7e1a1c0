"""Dense object detection (RetinaNet, Lin et al., ICCV 2017) as mmdetection
2.13 trains and tests it for the PVT paper's COCO results.

Training (per image, vmapped; `ops/`): anchors of every pyramid
level, valid only inside the image's padded region; MaxIoU assignment
(positive IoU >= 0.5, negative < 0.4, low-quality matches with min IoU 0);
sigmoid focal loss (Eq. 5, gamma 2, alpha 0.25) over positive and negative
anchors, L1 on delta-xywh targets of positives, both divided by
sum_i max(#pos_i, 1) over the global batch (mmdet normalises per device),
also under gradient accumulation (`normalizers`).

Inference: per level the top 1000 anchors by best class score, deltas decoded
and clipped to the image, class-wise NMS at IoU 0.5 over all (box, class)
pairs scoring > 0.05 (`max_nms_candidates` caps them; evaluators then count
the images where the cap may have changed the result), the best 100 per
image. Boxes stay in the resized-image frame; evaluators map them back with
"image/scale".
"""
from typing import Sequence

import jax
import jax.numpy as jnp

from vision_jax.batch import BOXES, CLASSES, IMAGE_ID, IMAGE_SCALE, IMAGE_SIZE, MASK
from vision_jax.tasks.base import Task
from vision_jax.tasks.detection import losses
from vision_jax.tasks.detection.ops import anchors as anchors_lib
from vision_jax.tasks.detection.ops import assign, box_coder, nms



class DetectionTask(Task):
  """Loss and predictions for a model returning {"cls": [B, N, C], "reg": [B, N, 4]}
  in (level, y, x, anchor) order with aux["levels"] the pyramid sizes; the
  model declares its pyramid (`feature_levels()`) and `num_classes`, which
  the task takes from it."""
  SHARED_WITH_MODEL = ("num_classes",)

  def __init__(self, num_classes: int = 80, strides: Sequence[int] = anchors_lib.RETINANET_STRIDES,
               octave_base_scale: float = 4.0, scales_per_octave: int = 3,
               ratios: Sequence[float] = anchors_lib.RETINANET_RATIOS,
               pos_iou: float = 0.5, neg_iou: float = 0.4, min_pos_iou: float = 0.0,
               focal_gamma: float = 2.0, focal_alpha: float = 0.25, box_loss_weight: float = 1.0,
               nms_pre: int = 1000, score_threshold: float = 0.05, nms_iou: float = 0.5,
               max_detections: int = 100, max_nms_candidates: int | None = None):
    self.num_classes = num_classes
    self.strides, self.ratios = tuple(strides), tuple(ratios)
    self.octave_base_scale, self.scales_per_octave = octave_base_scale, scales_per_octave
    self.pos_iou, self.neg_iou, self.min_pos_iou = pos_iou, neg_iou, min_pos_iou
    self.focal_gamma, self.focal_alpha = focal_gamma, focal_alpha
    self.box_loss_weight = box_loss_weight
    self.nms_pre, self.score_threshold, self.nms_iou = nms_pre, score_threshold, nms_iou
    self.max_detections, self.max_nms_candidates = max_detections, max_nms_candidates

  @property
  def anchors_per_location(self) -> int:
    return self.scales_per_octave * len(self.ratios)

  def check(self, model) -> None:
    """The model's declared pyramid strides and anchors per location are the task's."""
    if not callable(getattr(model, "feature_levels", None)) or not hasattr(model, "num_anchors"):
      raise ValueError(f"detection needs a dense detector that declares its pyramid "
                       f"(feature_levels()) and num_anchors, e.g. 'retinanet'; got "
                       f"{type(model).__name__}.")
    strides = tuple(level.stride for level in model.feature_levels().values())
    if strides != self.strides:
      raise ValueError(f"The model's pyramid has strides {strides}; the task's anchors "
                       f"'task.strides' are {self.strides}.")
    if model.num_anchors != self.anchors_per_location:
      raise ValueError(f"'model.num_anchors' = {model.num_anchors} but the task has "
                       f"{self.anchors_per_location} anchors per location (scales_per_octave "
                       f"{self.scales_per_octave} x {len(self.ratios)} ratios).")

  def anchors(self, levels: Sequence[tuple[int, int]]) -> jax.Array:
    """Anchors [N, 4] of pyramid levels of sizes `levels` (static)."""
    if len(levels) != len(self.strides):
      raise ValueError(f"The model returns {len(levels)} pyramid levels; the task has "
                       f"{len(self.strides)} strides {self.strides}.")
    return anchors_lib.multilevel_anchors(levels, self.strides, self.octave_base_scale,
                                          self.scales_per_octave, self.ratios)

  def _check_outputs(self, outputs: dict, anchors: jax.Array) -> None:
    n, c = outputs["cls"].shape[1:]
    if n != anchors.shape[0] or c != self.num_classes:
      raise ValueError(f"Model outputs {n} anchors x {c} classes; the task expects "
                       f"{anchors.shape[0]} x {self.num_classes} ({self.anchors_per_location} "
                       "anchors per location): model.num_anchors/num_classes and the task disagree.")

  def targets(self, anchors: jax.Array, levels, batch: dict) -> dict:
    """Per-image training targets (mmdet `AnchorHead.get_targets`), batched."""

    def one(boxes, classes, size):
      valid = anchors_lib.valid_anchor_mask(levels, size, self.strides, self.anchors_per_location)
      matched = assign.max_iou_assign(anchors, boxes, classes >= 0, valid, self.pos_iou,
                                      self.neg_iou, self.min_pos_iou)
      return assign.anchor_targets(anchors, boxes, classes, matched, self.num_classes)

    return jax.vmap(one)(batch[BOXES], batch[CLASSES], batch[IMAGE_SIZE])

  @staticmethod
  def _sums(num_pos: jax.Array, mask: jax.Array) -> dict:
    return {"positives": jnp.sum(jnp.maximum(num_pos.astype(jnp.float32), 1.0) * mask),
            "images": jnp.sum(mask)}

  def normalizers(self, aux: dict, batch: dict) -> dict:
    """What the loss divides by, as sums over the batch's examples (needs only
    aux["levels"]): sum_i max(#pos_i, 1) and the number of real images."""
    anchors = self.anchors(aux["levels"])
    t = self.targets(anchors, aux["levels"], batch)
    return self._sums(t["num_pos"], batch[MASK].astype(jnp.float32))

  def loss(self, outputs: dict, aux: dict, batch: dict,
           normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    """Focal + L1 over `normalizers` (the whole step's; default: this batch's)."""
    anchors = self.anchors(aux["levels"])
    self._check_outputs(outputs, anchors)
    t = self.targets(anchors, aux["levels"], batch)
    mask = batch[MASK].astype(jnp.float32)  # Skipped and padding examples count for nothing.
    num_pos = t["num_pos"].astype(jnp.float32)
    if normalizers is None:
      normalizers = self._sums(num_pos, mask)
    normalizer = jnp.maximum(normalizers["positives"], 1.0)
    cls_weights = t["cls_weights"] * mask[:, None]
    focal = losses.sigmoid_focal_loss(outputs["cls"], t["cls_targets"], self.focal_gamma,
                                      self.focal_alpha)
    cls_loss = jnp.sum(focal * cls_weights[..., None]) / normalizer
    box_weights = t["box_weights"] * mask[:, None]
    l1 = losses.l1_loss(outputs["reg"], t["box_targets"])
    box_loss = self.box_loss_weight * jnp.sum(l1 * box_weights[..., None]) / normalizer
    loss = cls_loss + box_loss
    images = jnp.maximum(normalizers["images"], 1.0)
    return loss, {"loss": loss, "cls_loss": cls_loss, "box_loss": box_loss,
                  "positives_per_image": jnp.sum(num_pos * mask) / images}

  def predict(self, outputs: dict, aux: dict, batch: dict) -> dict:
    anchors = self.anchors(aux["levels"])
    self._check_outputs(outputs, anchors)
    counts = anchors_lib.level_counts(aux["levels"], self.anchors_per_location)

    def one(cls_logits, deltas, size):
      scores = jax.nn.sigmoid(cls_logits)
      keep = nms.topk_per_level(scores, counts, self.nms_pre)
      boxes = box_coder.decode(anchors[keep], deltas[keep], clip_hw=size)
      return nms.multiclass_nms(boxes, scores[keep], self.score_threshold, self.nms_iou,
                                self.max_detections, self.max_nms_candidates)

    dets = jax.vmap(one)(outputs["cls"], outputs["reg"], batch[IMAGE_SIZE])
    out = {BOXES: dets.boxes, "scores": dets.scores, CLASSES: dets.classes,
           IMAGE_ID: batch[IMAGE_ID], IMAGE_SCALE: batch[IMAGE_SCALE]}
    if self.max_nms_candidates is not None:  # Evaluators count the images the cap changed.
      out["nms_exact"] = dets.exact
    return out

  def default_evaluators(self) -> dict:
    return {"coco": {"kind": "coco"}}
