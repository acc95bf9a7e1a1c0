"""Bilinear resizing as PyTorch's `interpolate(mode="bilinear")` computes it
(no antialiasing, also when shrinking), written as separable tap matrices:
a resize of [B, H, W, C] to (h, w) is rows [h, H] @ x @ cols [w, W]^T.

`bilinear_matrix` builds the taps of static sizes (numpy); `dynamic_bilinear_matrix`
those of sizes known only on device (a per-example valid region inside a fixed
canvas), so resizing to each image's own size keeps static array shapes.
"""
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def _source(i, n_in, n_out, align_corners: bool, xp):
  """Source positions of output pixels `i` (PyTorch's float32 arithmetic)."""
  f32 = xp.float32
  n_in, n_out = xp.asarray(n_in, f32), xp.asarray(n_out, f32)
  if align_corners:
    scale = xp.where(n_out > 1, (n_in - 1) / xp.maximum(n_out - 1, 1), 0)
    return (scale * i).astype(f32)
  scale = n_in / n_out
  return xp.maximum(scale * (i + f32(0.5)) - f32(0.5), 0).astype(f32)


def bilinear_matrix(n_in: int, n_out: int, align_corners: bool = False) -> np.ndarray:
  """(n_out, n_in) taps of 1-D linear resizing; positions follow PyTorch's
  float32 arithmetic (align_corners=False: src = in / out * (i + 0.5) - 0.5,
  clamped at 0; True: src = i * (in - 1) / (out - 1))."""
  f32 = np.float32
  if align_corners:
    src = _source(np.arange(n_out, dtype=f32), n_in, n_out, True, np)
  else:  # The fused multiply-add of PyTorch rounds once.
    scale = np.float64(f32(n_in) / f32(n_out))
    src = np.maximum(scale * (np.arange(n_out) + 0.5) - 0.5, 0.).astype(f32)
  lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
  hi = np.minimum(lo + 1, n_in - 1)
  frac = np.clip(src - lo.astype(f32), f32(0.), f32(1.))
  matrix = np.zeros((n_out, n_in), f32)
  np.add.at(matrix, (np.arange(n_out), lo), 1. - frac)
  np.add.at(matrix, (np.arange(n_out), hi), frac)
  return matrix


def dynamic_bilinear_matrix(n_in: jax.Array, n_out: jax.Array, in_canvas: int, out_canvas: int,
                            align_corners: bool = False) -> jax.Array:
  """(out_canvas, in_canvas) taps resizing the first `n_in` entries of a canvas
  to `n_out` entries (traced sizes); rows past `n_out` and columns past
  `n_in` are zero."""
  i = jnp.arange(out_canvas, dtype=jnp.float32)
  src = _source(i, n_in, n_out, align_corners, jnp)
  last = jnp.asarray(n_in, jnp.int32) - 1
  lo = jnp.minimum(jnp.floor(src).astype(jnp.int32), last)
  hi = jnp.minimum(lo + 1, last)
  frac = jnp.clip(src - lo.astype(jnp.float32), 0., 1.)
  cols = jnp.arange(in_canvas)
  taps = ((cols == lo[:, None]) * (1. - frac)[:, None] + (cols == hi[:, None]) * frac[:, None])
  return jnp.where((i < n_out)[:, None], taps, 0.).astype(jnp.float32)


def resize_bilinear(x: jax.Array, size: Sequence[int], align_corners: bool = False) -> jax.Array:
  """[B, H, W, C] -> [B, h, w, C], as torch interpolate(size=(h, w), mode="bilinear")."""
  (h, w), (oh, ow) = x.shape[1:3], tuple(size)
  if (h, w) == (oh, ow):
    return x
  rows = jnp.asarray(bilinear_matrix(h, oh, align_corners), x.dtype)
  cols = jnp.asarray(bilinear_matrix(w, ow, align_corners), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", rows, x, cols, precision=jax.lax.Precision.HIGHEST)
