"""Delta-XYWH box coder (R-CNN, Girshick et al. 2014, arXiv:1311.2524, Eq. 1-4
and App. C), as mmdetection 2.13 `DeltaXYWHBBoxCoder` (`bbox2delta` /
`delta2bbox`).

With anchor centre/size p = (px, py, pw, ph), px = (x1 + x2) / 2, pw = x2 - x1,
and likewise g for the target box:
  encode: d = ((gx - px) / pw, (gy - py) / ph, log(gw / pw), log(gh / ph)),
          then (d - means) / stds;
  decode: d = d * stds + means; dw, dh clamped to [-max_ratio, max_ratio]
          (max_ratio = |log(16 / 1000)|); gx = px + pw * dx, gw = pw * exp(dw),
          box = (gx - gw / 2, gy - gh / 2, gx + gw / 2, gy + gh / 2),
          optionally clipped to the image (x in [0, w], y in [0, h]).
RetinaNet uses means 0 and stds 1.
"""
import math
from typing import Sequence

import jax.numpy as jnp

from vision_jax.tasks.detection.ops import boxes as box_ops

MAX_RATIO = abs(math.log(16. / 1000.))  # mmdet `wh_ratio_clip = 16 / 1000`.
_ZEROS = (0., 0., 0., 0.)
_ONES = (1., 1., 1., 1.)


def _center_size(boxes: jnp.ndarray):
  x = (boxes[..., 0] + boxes[..., 2]) * 0.5
  y = (boxes[..., 1] + boxes[..., 3]) * 0.5
  w = boxes[..., 2] - boxes[..., 0]
  h = boxes[..., 3] - boxes[..., 1]
  return x, y, w, h


def encode(anchors: jnp.ndarray, gt: jnp.ndarray, means: Sequence[float] = _ZEROS,
           stds: Sequence[float] = _ONES) -> jnp.ndarray:
  """Regression targets [..., 4] (dx, dy, dw, dh) taking `anchors` to `gt`.

  Shapes broadcast. A zero-width/height `gt` gives -inf: select a safe target
  (e.g. the anchor itself) for rows that are not positives before encoding.
  """
  px, py, pw, ph = _center_size(anchors.astype(jnp.float32))
  gx, gy, gw, gh = _center_size(gt.astype(jnp.float32))
  deltas = jnp.stack([(gx - px) / pw, (gy - py) / ph, jnp.log(gw / pw), jnp.log(gh / ph)],
                     axis=-1)
  return (deltas - jnp.asarray(means, jnp.float32)) / jnp.asarray(stds, jnp.float32)


def decode(anchors: jnp.ndarray, deltas: jnp.ndarray, means: Sequence[float] = _ZEROS,
           stds: Sequence[float] = _ONES, max_ratio: float = MAX_RATIO,
           clip_hw=None) -> jnp.ndarray:
  """Boxes [..., 4] from `deltas` [..., 4] applied to `anchors` [..., 4].

  dw/dh are clamped to ±`max_ratio` (huge predictions cannot overflow exp);
  `clip_hw` = (h, w) (static or traced [..., 2], e.g. "image/size") clips the
  result to the image as mmdet's `max_shape`; None leaves boxes unclipped.
  """
  d = deltas * jnp.asarray(stds, deltas.dtype) + jnp.asarray(means, deltas.dtype)
  dx, dy = d[..., 0], d[..., 1]
  dw = jnp.clip(d[..., 2], -max_ratio, max_ratio)
  dh = jnp.clip(d[..., 3], -max_ratio, max_ratio)
  px, py, pw, ph = _center_size(anchors)
  gw, gh = pw * jnp.exp(dw), ph * jnp.exp(dh)
  gx, gy = px + pw * dx, py + ph * dy
  out = jnp.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], axis=-1)
  if clip_hw is not None:
    out = box_ops.clip_boxes(out, clip_hw)
  return out

