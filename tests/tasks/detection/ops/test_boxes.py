"""Box IoU (mmdet bbox_overlaps) and the delta-XYWH coder (mmdet 2.13)."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.tasks.detection.ops import box_coder
from vision_jax.tasks.detection.ops import boxes as box_ops


def _random_boxes(rng, n, size=100.):
  xy = rng.uniform(0, size, (n, 2))
  wh = rng.uniform(0, size / 2, (n, 2))
  return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _iou_loop(a, b, eps=1e-6):
  out = np.zeros((len(a), len(b)))
  for i, p in enumerate(a.astype(np.float64)):
    for j, q in enumerate(b.astype(np.float64)):
      iw = max(min(p[2], q[2]) - max(p[0], q[0]), 0.)
      ih = max(min(p[3], q[3]) - max(p[1], q[1]), 0.)
      inter = iw * ih
      union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
      out[i, j] = inter / max(union, eps)
  return out


def test_iou_matches_loop_and_edge_cases():
  rng = np.random.default_rng(0)
  a, b = _random_boxes(rng, 17), _random_boxes(rng, 23)
  b[0] = a[0]                      # identical -> 1.
  b[1] = [0., 0., 0., 0.]          # degenerate (padding row) -> 0, not NaN.
  a[2] = [0., 0., 10., 10.]
  b[2] = [10., 0., 20., 10.]       # touching -> 0.
  b[3] = [0., 0., 10., 5.]         # half of a[2] -> exactly 0.5 (no "+1").
  got = np.asarray(jax.jit(box_ops.pairwise_iou)(a, b))
  np.testing.assert_allclose(got, _iou_loop(a, b), rtol=1e-5, atol=1e-6)
  assert got[0, 0] == 1. and got[2, 2] == 0. and got[2, 3] == 0.5
  assert np.all(got[:, 1] == 0.)
  np.testing.assert_allclose(box_ops.box_area(jnp.asarray(a[2])), 100.)


def test_clip_boxes_traced_size():
  b = jnp.array([[-5., -3., 700., 900.], [10., 20., 30., 40.]])
  clip = jax.jit(box_ops.clip_boxes)
  np.testing.assert_array_equal(clip(b, jnp.array([800, 600])),
                                [[0., 0., 600., 800.], [10., 20., 30., 40.]])


def test_encode_known_values_and_round_trip():
  anchors = jnp.array([[0., 0., 10., 20.]])
  gt = jnp.array([[5., 0., 25., 10.]])
  # centres (5, 10) -> (15, 5), sizes (10, 20) -> (20, 10).
  np.testing.assert_allclose(box_coder.encode(anchors, gt),
                             [[1., -0.25, math.log(2.), math.log(0.5)]], rtol=1e-6)
  rng = np.random.default_rng(1)
  a, g = _random_boxes(rng, 200), _random_boxes(rng, 200)
  a[:, 2:] += 1.
  g[:, 2:] += 1.
  for means, stds in [((0.,) * 4, (1.,) * 4), ((.1, -.2, .0, .3), (.1, .1, .2, .2))]:
    d = jax.jit(box_coder.encode, static_argnums=(2, 3))(a, g, means, stds)
    back = box_coder.decode(jnp.asarray(a), d, means, stds)
    np.testing.assert_allclose(back, g, rtol=1e-5, atol=1e-4)


def test_decode_clamps_huge_deltas_and_clips():
  anchors = jnp.array([[0., 0., 10., 10.], [100., 100., 132., 164.]])
  deltas = jnp.array([[0., 0., 1e4, -1e4], [0.5, -0.25, 0., 0.]])
  out = np.asarray(box_coder.decode(anchors, deltas))
  ratio = 1000. / 16.  # exp(|log(16/1000)|)
  np.testing.assert_allclose(out[0], [5 - 5 * ratio, 5 - 5 / ratio, 5 + 5 * ratio,
                                      5 + 5 / ratio], rtol=1e-5)
  np.testing.assert_allclose(out[1], [116., 84., 148., 148.])  # centre (132, 116), 32x64.
  assert box_coder.MAX_RATIO == abs(math.log(16 / 1000))
  clipped = jax.jit(box_coder.decode)(anchors, deltas, clip_hw=jnp.array([120, 140]))  # (h, w)
  np.testing.assert_allclose(clipped, [[0., 5 - 5 / ratio, 140., 5 + 5 / ratio],
                                       [116., 84., 140., 120.]], rtol=1e-5)
