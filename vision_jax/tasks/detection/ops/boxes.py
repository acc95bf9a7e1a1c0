"""Axis-aligned box geometry in mmdetection 2.x convention.

Boxes are `(x1, y1, x2, y2)` in pixels; width = x2 - x1 (no "+1", mmdet >= 2.0),
area = width * height. IoU follows mmdet's `bbox_overlaps` (mode "iou"):
IoU(a, b) = |a ∩ b| / max(|a| + |b| - |a ∩ b|, eps), eps = 1e-6, intersection
sides clamped at 0. All functions broadcast over leading dims and trace under
jit/vmap.
"""
import jax.numpy as jnp
from jax import lax


def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
  """Area `(x2 - x1) * (y2 - y1)` of boxes [..., 4] -> [...]."""
  return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def intersection(boxes1: jnp.ndarray, boxes2: jnp.ndarray) -> jnp.ndarray:
  """Pairwise intersection areas: [..., N, 4] x [..., M, 4] -> [..., N, M]."""
  lt = jnp.maximum(boxes1[..., :, None, :2], boxes2[..., None, :, :2])
  rb = jnp.minimum(boxes1[..., :, None, 2:], boxes2[..., None, :, 2:])
  wh = jnp.maximum(rb - lt, 0.)
  return wh[..., 0] * wh[..., 1]


def _rounded(x: jnp.ndarray, probe: jnp.ndarray) -> jnp.ndarray:
  """`x` as stored float32 values, so that a compiler cannot fuse the products
  that made it into a later add (a fused multiply-add rounds once, not twice).

  Its bits pass through an AND with a mask the compiler cannot prove is all
  ones (it is, unless `probe` holds a NaN: then the last mantissa bit is cleared)."""
  mask = ~jnp.isnan(probe).any().astype(jnp.int32)
  return lax.bitcast_convert_type(lax.bitcast_convert_type(x, jnp.int32) & mask, jnp.float32)


def pairwise_iou(boxes1: jnp.ndarray, boxes2: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
  """IoU matrix [..., N, M] of boxes1 [..., N, 4] against boxes2 [..., M, 4].

  mmdet `BboxOverlaps2D` (mode "iou", is_aligned False): the union is clamped
  from below by `eps`, so degenerate pairs give IoU 0, never NaN.

  Float32 values equal mmdet's bit for bit, in every compiled program: each
  product is rounded before it is added, as when every torch op is its own
  kernel. Left to itself XLA fuses `area1 + area2 - w * h` into multiply-adds
  where it sees fit, so equal IoUs (the assigner's `==` ties) would depend on
  how the step was compiled (batch size, gradient accumulation, eager or jit).
  """
  inter = _rounded(intersection(boxes1, boxes2), boxes1)
  union = (_rounded(box_area(boxes1), boxes1)[..., :, None]
           + _rounded(box_area(boxes2), boxes1)[..., None, :] - inter)
  return inter / jnp.maximum(union, eps)


def clip_boxes(boxes: jnp.ndarray, size_hw) -> jnp.ndarray:
  """Clamp x to [0, w] and y to [0, h] (mmdet `delta2bbox` with `max_shape`).

  `size_hw` is `(h, w)`: Python numbers or a traced array [..., 2] broadcasting
  against the leading dims of `boxes` [..., 4] (e.g. a per-image "image/size").
  Note the upper bound is w (not w - 1), as in mmdet 2.x.
  """
  size_hw = jnp.asarray(size_hw, boxes.dtype)
  hi = jnp.stack([size_hw[..., 1], size_hw[..., 0]] * 2, axis=-1)
  return jnp.clip(boxes, 0., hi)
