"""Fixed-shape greedy NMS vs NumPy loops of mmcv nms / mmdet multiclass_nms."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.tasks.detection.ops import nms as nms_ops


def _greedy_ref(boxes, scores, classes, thr):
  """mmcv nms (CUDA form: inter > thr * union), per class, visiting by score."""
  boxes = boxes.astype(np.float32)
  order = np.argsort(-scores, kind="stable")
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  dead = np.zeros(len(boxes), bool)
  keep = []
  for pos, i in enumerate(order):
    if dead[i]:
      continue
    keep.append(i)
    for j in order[pos + 1:]:
      if classes[j] != classes[i]:
        continue
      w = max(min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]), 0)
      h = max(min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]), 0)
      inter = np.float32(w * h)
      if inter > np.float32(thr) * (area[i] + area[j] - inter):
        dead[j] = True
  return np.array(keep, np.int64)


def _clustered(rng, n_clusters=6, per=9, num_classes=3):
  centers = rng.integers(20, 200, (n_clusters, 2))
  c = np.repeat(centers, per, 0) + rng.integers(-4, 5, (n_clusters * per, 2))
  wh = rng.integers(10, 30, (n_clusters * per, 2))
  boxes = np.concatenate([c - wh // 2, c + (wh + 1) // 2], 1).astype(np.float32)
  # Exact IoU ties at 0.5 (kept: strict ">") and 0.6 (suppressed), same class.
  boxes = np.concatenate([boxes, [[300, 300, 310, 310], [300, 300, 310, 305],
                                  [400, 400, 410, 410], [400, 400, 410, 406]]]).astype(np.float32)
  scores = rng.random(len(boxes)).astype(np.float32)
  scores[-4:] = [.9, .8, .9, .8]
  scores[:6] = scores[6]  # a few equal scores: visited in index order.
  classes = rng.integers(0, num_classes, len(boxes)).astype(np.int32)
  classes[-4:] = 1
  return boxes, scores, classes


def test_nms_matches_greedy_loop_jit_and_vmap():
  rng = np.random.default_rng(0)
  cases = [_clustered(rng) for _ in range(3)]
  run = jax.jit(functools.partial(nms_ops.nms, iou_threshold=0.5, max_out=64))
  batched = jax.jit(jax.vmap(lambda b, s, c: nms_ops.nms(b, s, 0.5, 64, classes=c)))(
      *[np.stack(x) for x in zip(*cases)])
  for k, (boxes, scores, classes) in enumerate(cases):
    ref = _greedy_ref(boxes, scores, classes, 0.5)
    assert 0 < len(ref) < 58  # something was suppressed, fewer kept than max_out.
    idx, count = run(boxes, scores, classes=classes)
    assert int(count) == len(ref)
    np.testing.assert_array_equal(idx[:len(ref)], ref)
    assert np.all(np.asarray(idx[len(ref):]) == -1)
    np.testing.assert_array_equal(batched[0][k], idx)
    assert {54, 55} <= set(ref.tolist()) and 56 in ref and 57 not in ref  # 0.5 kept, 0.6 not.
  # Class-agnostic, a stricter threshold and max_out below the kept count: the prefix.
  boxes, scores, classes = cases[0]
  ref = _greedy_ref(boxes, scores, np.zeros_like(classes), 0.3)
  idx, count = nms_ops.nms(jnp.asarray(boxes), jnp.asarray(scores), 0.3, 5)
  assert int(count) == 5
  np.testing.assert_array_equal(idx, ref[:5])


def test_nms_valid_mask_and_gather():
  boxes = jnp.array([[0., 0., 10., 10.], [1., 1., 10., 10.], [50., 50., 60., 60.]])
  scores = jnp.array([0.9, 0.8, 0.7])
  idx, count = nms_ops.nms(boxes, scores, 0.5, 4, valid=jnp.array([False, True, True]))
  np.testing.assert_array_equal(idx, [1, 2, -1, -1])
  assert int(count) == 2
  b, s, c = nms_ops.gather_detections(boxes, scores, jnp.array([4, 5, 6]), idx)
  np.testing.assert_array_equal(c, [5, 6, -1, -1])
  np.testing.assert_allclose(s, [0.8, 0.7, 0., 0.])
  assert float(jnp.abs(b[2:]).sum()) == 0.


def _multiclass_ref(boxes, scores, score_thr, iou_thr, max_num):
  """mmdet multiclass_nms: (box, class) pairs with score > thr, batched_nms, [:max_num]."""
  rows, cols = np.nonzero(scores > score_thr)  # row-major, as torch nonzero.
  b, s = boxes[rows], scores[rows, cols]
  keep = _greedy_ref(b, s, cols, iou_thr)[:max_num]
  return b[keep], s[keep], cols[keep]


def _check_equal(det, ref):
  n = len(ref[1])
  assert int(det.count) == n
  np.testing.assert_array_equal(det.boxes[:n], ref[0])
  np.testing.assert_array_equal(det.scores[:n], ref[1])
  np.testing.assert_array_equal(det.classes[:n], ref[2])
  assert np.all(np.asarray(det.classes[n:]) == -1) and np.all(np.asarray(det.scores[n:]) == 0)


def test_multiclass_nms_matches_mmdet_reference():
  rng = np.random.default_rng(1)
  boxes, _, _ = _clustered(rng, n_clusters=5, per=12)
  scores = (rng.random((len(boxes), 4)) ** 3).astype(np.float32)
  mc = jax.jit(nms_ops.multiclass_nms, static_argnames=("max_per_img", "max_candidates"))
  ref = _multiclass_ref(boxes, scores, 0.05, 0.5, 100)
  assert 20 < len(ref[1]) < 100
  det = mc(boxes, scores, max_per_img=100, max_candidates=1000)
  _check_equal(det, ref)
  assert bool(det.exact)
  # Budget below the candidates but enough to fill max_per_img: still exact.
  det = mc(boxes, scores, max_per_img=10, max_candidates=40)
  assert bool(det.exact)
  _check_equal(det, _multiclass_ref(boxes, scores, 0.05, 0.5, 10))
  # Budget exhausted by one suppressed cluster before max_per_img: flagged inexact.
  dup = np.concatenate([np.tile(boxes[:1], (30, 1)), boxes])
  dup_scores = np.concatenate([np.full((30, 4), 0.), scores])
  dup_scores[:30, 0] = np.linspace(0.99, 0.98, 30)
  det = mc(dup, dup_scores, max_per_img=10, max_candidates=20)
  assert not bool(det.exact) and int(det.count) == 1
  assert len(_multiclass_ref(dup, dup_scores, 0.05, 0.5, 10)[1]) == 10
  # vmap over images.
  batched = jax.jit(jax.vmap(functools.partial(nms_ops.multiclass_nms, max_per_img=100)))(
      np.stack([boxes, boxes[::-1]]), np.stack([scores, scores[::-1]]))
  _check_equal(jax.tree.map(lambda x: x[1], batched),
               _multiclass_ref(boxes[::-1], scores[::-1], 0.05, 0.5, 100))


def test_topk_per_level():
  rng = np.random.default_rng(2)
  counts = (50, 20, 7)
  scores = rng.random((sum(counts), 3)).astype(np.float32)
  idx = np.asarray(jax.jit(nms_ops.topk_per_level, static_argnums=(1, 2))(scores, counts, 10))
  assert idx.shape == (27,)
  best, start = scores.max(1), 0
  for n, sl in zip(counts, [slice(0, 10), slice(10, 20), slice(20, 27)]):
    np.testing.assert_array_equal(idx[sl], start + np.argsort(-best[start:start + n])[:10])
    start += n


def _crowded(rng):
  """A crowded image: 250 near-copies of one object scoring high in all 6 classes
  (1,500 pairs that suppress each other), then 150 distinct lower-scoring boxes."""
  dup = np.tile([[100., 100., 160., 150.]], (250, 1)) + rng.uniform(-1, 1, (250, 4))
  grid = np.stack(np.meshgrid(np.arange(15), np.arange(10)), -1).reshape(-1, 2) * 40.
  distinct = np.concatenate([grid + 700, grid + 730], 1)
  boxes = np.concatenate([dup, distinct]).astype(np.float32)
  scores = np.concatenate([rng.uniform(0.8, 0.99, (250, 6)),
                           rng.uniform(0.06, 0.7, (150, 6))]).astype(np.float32)
  return boxes, scores


def test_multiclass_nms_is_exact_by_default_on_a_crowded_image():
  boxes, scores = _crowded(np.random.default_rng(2))
  ref = _multiclass_ref(boxes, scores, 0.05, 0.5, 100)
  assert len(ref[1]) == 100 and (scores > 0.05).sum() == 2400
  det = jax.jit(nms_ops.multiclass_nms)(boxes, scores)
  _check_equal(det, ref)
  assert bool(det.exact)
  # The former default budget of 1000 pairs holds only near-copies: 6 kept, flagged.
  capped = jax.jit(functools.partial(nms_ops.multiclass_nms, max_candidates=1000))(boxes, scores)
  assert int(capped.count) == 6 and not bool(capped.exact)
