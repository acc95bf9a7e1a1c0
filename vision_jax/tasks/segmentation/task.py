"""Semantic segmentation as mmsegmentation 0.x trains and tests it (the PVT
paper's Semantic FPN on ADE20K, Wang et al., ICCV 2021, Sec. 5.3).

Training: the model's logits [B, h, w, C] are resized bilinearly to the label
size (`align_corners` as the head's) and scored by per-pixel cross-entropy,
optionally class-weighted, with `ignore_index` pixels left out. mmseg's
`CrossEntropyLoss` takes the mean over every pixel of the batch, ignored ones
included (its default before `avg_non_ignore`); `average="valid"` divides by
the non-ignored pixels instead. Either count is summed over the step's real
examples (`normalizers`), so micro-batches add up to the whole batch's loss.
Auxiliary heads (outputs["aux_logits"][name]) add `aux_weights[name]` times
the same loss.

Evaluation, single scale: "whole" runs the model on the padded canvas; "slide"
(mmseg's `slide_inference`) runs it on `crop`-sized windows every `stride`
pixels of each image's own input region, averaging overlapping logits. The
logits are then resized to the original image size (`resize.to_original_size`)
and the arg-max is the prediction, on a label canvas of the label's shape.
"""
import math
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp

from vision_jax.batch import IMAGE, IMAGE_SIZE, MASK, ORIGINAL_SIZE, SEGMENTATION
from vision_jax.layers import interpolate
from vision_jax.tasks.base import Task
from vision_jax.tasks.segmentation import resize

AUX_LOGITS = "aux_logits"  # outputs key of auxiliary heads' logits {name: [B, h, w, C]}.
LOGITS = "logits"


class SegmentationTask(Task):
  """Loss and predictions for a model returning {"logits": [B, h, w, C]}
  (any stride) and optionally {"aux_logits": {name: [B, h', w', C]}}."""
  SHARED_WITH_MODEL = ("num_classes",)

  def __init__(self, num_classes: int = 150, ignore_index: int = 255,
               class_weights: Sequence[float] | None = None, align_corners: bool = False,
               average: str = "all", aux_weights: Mapping[str, float] | None = None,
               mode: str = "whole", crop: Sequence[int] | None = None,
               stride: Sequence[int] | None = None):
    if average not in ("all", "valid"):
      raise ValueError(f"average={average!r}: choose 'all' (mmseg's mean over every pixel) or "
                       "'valid' (over non-ignored pixels, mmseg's avg_non_ignore).")
    if mode not in ("whole", "slide"):
      raise ValueError(f"mode={mode!r}: choose 'whole' or 'slide'.")
    if mode == "slide" and (crop is None or stride is None):
      raise ValueError("mode='slide' needs task.crop and task.stride, (h, w) each.")
    if class_weights is not None and len(class_weights) != num_classes:
      raise ValueError(f"class_weights has {len(class_weights)} entries for {num_classes} classes.")
    self.num_classes, self.ignore_index = num_classes, ignore_index
    self.class_weights = None if class_weights is None else tuple(map(float, class_weights))
    self.align_corners, self.average = align_corners, average
    self.aux_weights = dict(aux_weights or {})
    self.mode = mode
    self.crop = None if crop is None else tuple(crop)
    self.stride = None if stride is None else tuple(stride)

  def check(self, model) -> None:
    classes = getattr(model, "num_classes", None)
    if classes is not None and classes != self.num_classes:
      raise ValueError(f"The model predicts {classes} classes; the task has {self.num_classes}.")

  # --- Training.

  def _valid(self, labels: jax.Array) -> jax.Array:
    return (labels != self.ignore_index) & (labels < self.num_classes)

  def normalizers(self, aux: dict, batch: dict) -> dict:
    """Pixels of the batch's real examples: all of them, or the non-ignored."""
    del aux
    labels, mask = batch[SEGMENTATION].astype(jnp.int32), batch[MASK].astype(jnp.float32)
    if self.average == "all":
      per_example = jnp.full(mask.shape, math.prod(labels.shape[1:]), jnp.float32)
    else:
      per_example = jnp.sum(self._valid(labels), axis=(1, 2), dtype=jnp.float32)
    return {"pixels": jnp.sum(per_example * mask)}

  def pixel_losses(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-pixel (weighted) cross-entropy [B, H, W] of logits already at the
    labels' size; 0 on ignored pixels."""
    valid = self._valid(labels)
    target = jnp.where(valid, labels, 0)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_p, target[..., None], axis=-1)[..., 0]
    if self.class_weights is not None:
      nll = nll * jnp.asarray(self.class_weights, jnp.float32)[target]
    return jnp.where(valid, nll, 0.0)

  def _at_label_size(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
    return interpolate.resize_bilinear(logits.astype(jnp.float32), labels.shape[1:3],
                                       self.align_corners)

  def loss(self, outputs: dict, aux: dict, batch: dict,
           normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    labels = batch[SEGMENTATION].astype(jnp.int32)
    mask = batch[MASK].astype(jnp.float32)[:, None, None]
    pixels = jnp.maximum((normalizers or self.normalizers(aux, batch))["pixels"], 1.0)
    heads = {"decode": (outputs[LOGITS], 1.0)}
    unknown = sorted(set(outputs.get(AUX_LOGITS, {})) - set(self.aux_weights))
    if unknown:
      raise ValueError(f"The model has auxiliary heads {unknown} without a weight in "
                       f"task.aux_weights ({self.aux_weights}).")
    heads.update({name: (logits, self.aux_weights[name])
                  for name, logits in outputs.get(AUX_LOGITS, {}).items()})
    metrics, loss, decoded = {}, 0.0, None
    for name, (logits, weight) in heads.items():
      resized = self._at_label_size(logits, labels)  # Once per head: loss and accuracy.
      term = weight * jnp.sum(self.pixel_losses(resized, labels) * mask) / pixels
      metrics[f"loss/{name}"] = term
      loss = loss + term
      if decoded is None:
        decoded = jnp.argmax(resized, -1)
    valid = self._valid(labels) & (mask > 0)
    metrics["pixel_accuracy"] = (jnp.sum((decoded == labels) & valid)
                                 / jnp.maximum(jnp.sum(valid), 1))
    return loss, {"loss": loss, **metrics}

  # --- Evaluation.

  def windows(self, canvas: tuple[int, int]) -> list[tuple[int, int]]:
    """(row, column) grid indices of the sliding windows a `canvas`-sized input may need."""
    count = [max(n - c + s - 1, 0) // s + 1 for n, c, s in zip(canvas, self.crop, self.stride)]
    return [(i, j) for i in range(count[0]) for j in range(count[1])]

  def infer(self, apply: Callable, batch: dict) -> tuple[dict, dict]:
    """Whole-image or sliding-window logits; "slide" returns them at the
    input resolution (aux["stride"] 1), averaged where windows overlap."""
    if self.mode == "whole":
      return apply(*self.model_inputs(batch))
    images, sizes = batch[IMAGE], batch[IMAGE_SIZE].astype(jnp.int32)
    canvas, crop = images.shape[1:3], self.crop
    if any(c > n for c, n in zip(crop, canvas)):
      raise ValueError(f"task.crop {crop} is larger than the input canvas {tuple(canvas)}.")
    grid = jnp.asarray(self.windows(canvas), jnp.int32)  # [N, 2]
    stride = jnp.asarray(self.stride, jnp.int32)

    def corners(size):  # mmseg: y2 = min(y1 + crop, h); y1 = max(y2 - crop, 0).
      start = grid * stride
      end = jnp.minimum(start + jnp.asarray(crop), size)
      count = jnp.maximum(size - jnp.asarray(crop) + stride - 1, 0) // stride + 1
      return jnp.maximum(end - jnp.asarray(crop), 0), jnp.all(grid < count, axis=-1)

    starts, used = jax.vmap(corners)(sizes)  # [B, N, 2], [B, N]
    crops = jax.vmap(lambda im, st: jax.vmap(
        lambda s: jax.lax.dynamic_slice(im, (s[0], s[1], 0), crop + im.shape[-1:]))(st))(
            images, starts)
    outputs, aux = apply(crops.reshape((-1,) + crops.shape[2:]))
    logits = interpolate.resize_bilinear(outputs[LOGITS].astype(jnp.float32), crop,
                                         self.align_corners)
    logits = logits.reshape(crops.shape[:2] + logits.shape[1:])

    def stitch(window_logits, st, on):
      total = jnp.zeros(tuple(canvas) + window_logits.shape[-1:], jnp.float32)
      count = jnp.zeros(tuple(canvas) + (1,), jnp.float32)
      for k in range(window_logits.shape[0]):
        w = on[k].astype(jnp.float32)
        total = jax.lax.dynamic_update_slice(
            total, jax.lax.dynamic_slice(total, (st[k, 0], st[k, 1], 0), window_logits.shape[1:])
            + w * window_logits[k], (st[k, 0], st[k, 1], 0))
        ones = jnp.full(crop + (1,), w)
        count = jax.lax.dynamic_update_slice(
            count, jax.lax.dynamic_slice(count, (st[k, 0], st[k, 1], 0), crop + (1,)) + ones,
            (st[k, 0], st[k, 1], 0))
      return total / jnp.maximum(count, 1.0)

    merged = jax.vmap(stitch)(logits, starts, used)
    return {LOGITS: merged}, {"windows": used}

  def predict(self, outputs: dict, aux: dict, batch: dict) -> dict:
    """"prediction" uint8 [B, H, W] on the label canvas (at the original
    image size; `ignore_index` outside it) and the "label"."""
    del aux
    labels = batch[SEGMENTATION]
    prediction = resize.argmax_at_original_size(
        outputs[LOGITS], batch[IMAGE].shape[1:3], batch[IMAGE_SIZE], batch[ORIGINAL_SIZE],
        labels.shape[1:3], self.align_corners)
    rows = jnp.arange(labels.shape[1])[None, :, None]
    cols = jnp.arange(labels.shape[2])[None, None, :]
    size = batch[ORIGINAL_SIZE].astype(jnp.int32)
    inside = (rows < size[:, 0, None, None]) & (cols < size[:, 1, None, None])
    prediction = jnp.where(inside, prediction, self.ignore_index).astype(jnp.uint8)
    return {"prediction": prediction, "label": labels}

  def default_evaluators(self) -> dict:
    return {"miou": {"kind": "miou"}}
