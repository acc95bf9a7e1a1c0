"""RetinaNet anchors (Lin et al., 2017, arXiv:1708.02002, Sec. 4 "Anchors"), as
mmdetection 2.13 `AnchorGenerator` with `octave_base_scale=4,
scales_per_octave=3, ratios=[0.5, 1, 2], strides=[8, 16, 32, 64, 128]`.

Base anchors of a level with stride s (base size s, center_offset 0, so the
anchor of grid cell (0, 0) is centred at pixel (0, 0)):
  scales = octave_base_scale * 2 ** (k / scales_per_octave), k = 0..S-1
  h_ratio = sqrt(ratio), w_ratio = 1 / h_ratio
  w = s * w_ratio * scale, h = s * h_ratio * scale      (ratio-outer, scale-inner:
                                                         mmdet "scale_major")
  anchor = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), cx = cy = offset * s.
Grid anchors add shifts (x * s, y * s) and are laid out (y, x, anchor); levels
are concatenated, giving the flat order (level, y, x, anchor) that matches a
head output reshaped from [H, W, A * K] to [H * W * A, K].

Valid flags (mmdet `valid_flags`, computed from the per-image *pad shape*):
  valid_h = min(ceil(pad_h / s), feat_h), valid_w = min(ceil(pad_w / s), feat_w)
and an anchor is valid iff its cell (y, x) has y < valid_h and x < valid_w.
mmdet pads each image to a multiple of 32 (`Pad(size_divisor=32)`) before batch
collation pads further, so `pad = ceil(size / 32) * 32`; `size_divisor` does that.
"""
import math
from typing import Sequence, Tuple

import jax.numpy as jnp

RETINANET_STRIDES = (8, 16, 32, 64, 128)
RETINANET_RATIOS = (0.5, 1.0, 2.0)


def base_anchors(stride: int, octave_base_scale: float = 4., scales_per_octave: int = 3,
                 ratios: Sequence[float] = RETINANET_RATIOS,
                 center_offset: float = 0.) -> jnp.ndarray:
  """Base anchors [len(ratios) * scales_per_octave, 4] of one level (float32)."""
  octave = jnp.asarray([2. ** (k / scales_per_octave) for k in range(scales_per_octave)],
                       jnp.float32)
  scales = octave * octave_base_scale
  h_ratios = jnp.sqrt(jnp.asarray(ratios, jnp.float32))
  w_ratios = 1. / h_ratios
  ws = (stride * w_ratios[:, None] * scales[None, :]).reshape(-1)
  hs = (stride * h_ratios[:, None] * scales[None, :]).reshape(-1)
  c = center_offset * stride
  return jnp.stack([c - 0.5 * ws, c - 0.5 * hs, c + 0.5 * ws, c + 0.5 * hs], axis=-1)


def grid_anchors(base: jnp.ndarray, feature_size: Tuple[int, int], stride: int) -> jnp.ndarray:
  """Anchors [H * W * A, 4] of one level, ordered (y, x, anchor)."""
  h, w = feature_size
  sx = jnp.arange(w, dtype=jnp.float32) * stride
  sy = jnp.arange(h, dtype=jnp.float32) * stride
  xx = jnp.broadcast_to(sx[None, :], (h, w))
  yy = jnp.broadcast_to(sy[:, None], (h, w))
  shifts = jnp.stack([xx, yy, xx, yy], axis=-1).reshape(-1, 1, 4)
  return (shifts + base[None, :, :]).reshape(-1, 4)


def feature_sizes(canvas_hw: Tuple[int, int],
                  strides: Sequence[int] = RETINANET_STRIDES) -> Tuple[Tuple[int, int], ...]:
  """Pyramid sizes ceil(H / s) x ceil(W / s) for a canvas (H, W multiples of 32).

  P3-P5 divide exactly; P6/P7 come from stride-2 3x3 convs with padding 1, which
  give ceil(n / 2) (800x1344 -> 100x168, 50x84, 25x42, 13x21, 7x11).
  """
  return tuple((math.ceil(canvas_hw[0] / s), math.ceil(canvas_hw[1] / s)) for s in strides)


def multilevel_anchors(sizes: Sequence[Tuple[int, int]],
                       strides: Sequence[int] = RETINANET_STRIDES, octave_base_scale: float = 4.,
                       scales_per_octave: int = 3, ratios: Sequence[float] = RETINANET_RATIOS,
                       center_offset: float = 0.) -> jnp.ndarray:
  """All anchors [sum_l H_l * W_l * A, 4], flat order (level, y, x, anchor)."""
  assert len(sizes) == len(strides), (sizes, strides)
  return jnp.concatenate([
      grid_anchors(base_anchors(s, octave_base_scale, scales_per_octave, ratios, center_offset),
                   size, s) for size, s in zip(sizes, strides)], axis=0)


def level_counts(sizes: Sequence[Tuple[int, int]], num_base_anchors: int = 9) -> Tuple[int, ...]:
  """Static number of anchors per level (H_l * W_l * A)."""
  return tuple(h * w * num_base_anchors for h, w in sizes)


def valid_anchor_mask(sizes: Sequence[Tuple[int, int]], image_size,
                      strides: Sequence[int] = RETINANET_STRIDES, num_base_anchors: int = 9,
                      size_divisor: int = 32) -> jnp.ndarray:
  """Bool [sum_l H_l * W_l * A]: anchors whose cell lies in the image's pad region.

  `image_size` is (h, w) of the un-padded resized image (e.g. the traced
  "image/size" int32 [2]; vmap over it for a batch). It is rounded up to a
  multiple of `size_divisor` (mmdet's per-image `pad_shape`); pass 1 to use the
  size as is. Anchors outside are ignored in training (mmdet RetinaNet has
  `allowed_border=-1`, so `inside_flags == valid_flags`).
  """
  size = jnp.asarray(image_size, jnp.int32)
  pad = -(-size // size_divisor) * size_divisor
  masks = []
  for (fh, fw), s in zip(sizes, strides):
    vh = jnp.minimum(-(-pad[0] // s), fh)
    vw = jnp.minimum(-(-pad[1] // s), fw)
    cell = (jnp.arange(fh)[:, None] < vh) & (jnp.arange(fw)[None, :] < vw)
    masks.append(jnp.broadcast_to(cell[:, :, None], (fh, fw, num_base_anchors)).reshape(-1))
  return jnp.concatenate(masks, axis=0)
