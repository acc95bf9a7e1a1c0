"""From SCNN's probability maps to CULane lanes (Pan et al., AAAI 2018), as the
official tools do it: testLane.lua smooths each lane's probability map with a
9x9 box filter (zero padding, /81), tools/prob2lines/getLane.m and main.m turn
it into points:

- a lane is decoded only if its existence probability is > 0.5;
- 18 rows, k = 0..17, at y = 590 - 20k of the 1640 x 590 original image, i.e.
  map row round(H - 20k H / 590) (1-based, rounded half away from zero as
  MATLAB's uint16);
- per row the argmax x (first maximum), kept if its probability is > 0.3;
- a lane with fewer than 2 kept rows is dropped;
- points are written 0-based: x = round((argmax + 1) 1640 / W) - 1,
  y = 590 - 20k - 1 (main.m's `uint16(.) - 1`), bottom row first.

The official thresholds 8-bit PNGs (value / 255 > 0.3); here the float
probabilities are compared directly.
"""
from typing import Sequence

import jax
import numpy as np

CULANE_SIZE = (590, 1640)  # (height, width) of CULane's images.
NUM_ROWS = 18  # Rows sampled per lane.
ROW_GAP = 20  # Pixels between sampled rows, in the original image.


def _round_half_up(x):
  return np.floor(np.asarray(x, np.float64) + 0.5).astype(np.int64)


def smooth(probs: jax.Array, size: int = 9) -> jax.Array:
  """Box filter size x size (zero padding, divided by size^2: testLane.lua's
  fixed conv) of each channel of probs [B, H, W, L]; size <= 1: unchanged."""
  if size <= 1:
    return probs
  pad = (size - 1) // 2
  total = jax.lax.reduce_window(probs, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1),
                                ((0, 0), (pad, size - 1 - pad), (pad, size - 1 - pad), (0, 0)))
  return total / (size * size)


def sample_rows(height: int, original_height: int = CULANE_SIZE[0], num_rows: int = NUM_ROWS,
                gap: int = ROW_GAP) -> np.ndarray:
  """0-based rows [num_rows] of a map of `height` rows at y = H0 - gap k of
  the original image (getLane.m), bottom first."""
  k = np.arange(num_rows, dtype=np.float64)
  rows = _round_half_up(height - k * gap / original_height * height) - 1
  return np.clip(rows, 0, height - 1)


def lanes_from_rows(row_probs: np.ndarray, exist: np.ndarray, *,
                    original_size: Sequence[int] = CULANE_SIZE, gap: int = ROW_GAP,
                    exist_threshold: float = 0.5, threshold: float = 0.3,
                    min_points: int = 2) -> list[np.ndarray]:
  """Lanes (each float64 [n, 2] of (x, y) in original pixels, bottom first)
  from row_probs [R, W, L] (the lane maps at `sample_rows`) and the
  existence probabilities exist [L]."""
  row_probs, exist = np.asarray(row_probs), np.asarray(exist)
  num_rows, width, num_lanes = row_probs.shape
  h0, w0 = original_size
  ys = h0 - gap * np.arange(num_rows) - 1
  lanes = []
  for j in range(num_lanes):
    if not exist[j] > exist_threshold:
      continue
    ids = np.argmax(row_probs[:, :, j], axis=1)
    values = row_probs[np.arange(num_rows), ids, j]
    keep = values > threshold
    if keep.sum() < min_points:
      continue
    xs = _round_half_up((ids[keep] + 1) * w0 / width) - 1
    lanes.append(np.stack([xs, ys[keep]], axis=-1).astype(np.float64))
  return lanes


def prob2lines(probs: np.ndarray, exist: np.ndarray, *,
               original_size: Sequence[int] = CULANE_SIZE, num_rows: int = NUM_ROWS,
               gap: int = ROW_GAP, **thresholds) -> list[np.ndarray]:
  """Lanes from the (smoothed) lane maps probs [H, W, L] and exist [L]
  (`lanes_from_rows` on the rows of `sample_rows`)."""
  rows = sample_rows(np.shape(probs)[0], original_size[0], num_rows, gap)
  return lanes_from_rows(np.asarray(probs)[rows], exist, original_size=original_size, gap=gap,
                         **thresholds)
