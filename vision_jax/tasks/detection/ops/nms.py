"""Fixed-shape greedy NMS and RetinaNet post-processing, as mmcv `nms` /
`batched_nms` and mmdetection 2.13 `multiclass_nms` / `AnchorHead.get_bboxes`.

Greedy NMS (Neubeck & Van Gool, 2006; as in R-CNN): visit boxes by decreasing
score; keep a box unless a kept box of the same class overlaps it with
IoU > iou_threshold (strict, mmcv; tested as inter > thr * union, the form of
mmcv's CUDA kernel, so no division and degenerate boxes never suppress).
Score ties are visited in index order (a stable sort; torch leaves them open).

Formulation: boxes are sorted once; a `lax.while_loop` repeatedly takes the
first still-alive box, records it, and kills the alive boxes of its class that
it overlaps (one row of IoUs, O(K) per step). It stops after `max_out` kept
boxes or when none are alive, so the cost is O(max_out * K) and no K x K matrix
is built. Works under jit and vmap.

Exactness with a candidate budget: whether greedy NMS keeps a box depends only
on the boxes scored above it, so running it on the top `max_candidates`
(box, class) pairs keeps exactly the full run's kept boxes among them. The
result equals the unbounded one when (a) all pairs above score_thr fit in the
budget, or (b) the budget already yields `max_per_img` kept boxes: then these
are the first `max_per_img` of the full run. `Detections.exact` reports this.
"""
from typing import NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from vision_jax.tasks.detection.ops import boxes as box_ops


class Detections(NamedTuple):
  boxes: jnp.ndarray    # float32 [max_per_img, 4]; 0 in padding rows.
  scores: jnp.ndarray   # float32 [max_per_img], decreasing; 0 in padding rows.
  classes: jnp.ndarray  # int32 [max_per_img]; -1 in padding rows.
  count: jnp.ndarray    # int32 scalar, number of real rows.
  exact: jnp.ndarray    # bool scalar, True when provably equal to unbounded mmdet.


def _greedy_sorted(boxes: jnp.ndarray, classes: jnp.ndarray, alive: jnp.ndarray,
                   iou_threshold: float, max_out: int) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """Greedy NMS over boxes already sorted by decreasing score.

  Returns positions [max_out] (int32, -1 padded) into the sorted arrays, in
  keep order, and the count.
  """
  areas = box_ops.box_area(boxes)
  slots = jnp.arange(max_out)
  positions = jnp.arange(boxes.shape[0])

  def cond(state):
    n, alive, _ = state
    return (n < max_out) & alive.any()

  def body(state):
    n, alive, out = state
    i = jnp.argmax(alive)  # First alive = highest remaining score.
    inter = box_ops.intersection(boxes[i][None], boxes)[0]
    union = areas[i] + areas - inter
    suppress = (inter > iou_threshold * union) & (classes == classes[i])
    alive = alive & ~suppress & (positions != i)
    out = jnp.where(slots == n, i, out)
    return n + 1, alive, out

  init = (jnp.int32(0), alive.astype(bool), jnp.full((max_out,), -1, jnp.int32))
  count, _, out = jax.lax.while_loop(cond, body, init)
  return out.astype(jnp.int32), count


def nms(boxes: jnp.ndarray, scores: jnp.ndarray, iou_threshold: float, max_out: int,
        classes: Optional[jnp.ndarray] = None,
        valid: Optional[jnp.ndarray] = None) -> Tuple[jnp.ndarray, jnp.ndarray]:
  """(Class-wise) greedy NMS of boxes [K, 4] with scores [K] in any order.

  `classes` int [K] restricts suppression to equal classes (mmcv
  `batched_nms`); None is class-agnostic. `valid` bool [K] drops entries.
  Returns (indices int32 [max_out] into the inputs, by decreasing score, -1
  padded; count int32), like mmcv's `keep[:max_out]`.
  """
  k = boxes.shape[0]
  valid = jnp.ones((k,), bool) if valid is None else valid.astype(bool)
  classes = jnp.zeros((k,), jnp.int32) if classes is None else classes
  key = jnp.where(valid, -scores.astype(jnp.float32), jnp.inf)
  order = jnp.argsort(key, stable=True)
  pos, count = _greedy_sorted(boxes[order], classes[order], valid[order], iou_threshold,
                              max_out)
  return jnp.where(pos >= 0, order[jnp.maximum(pos, 0)], -1).astype(jnp.int32), count


def gather_detections(boxes: jnp.ndarray, scores: jnp.ndarray, classes: jnp.ndarray,
                      indices: jnp.ndarray) -> Tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
  """Rows `indices` (-1 = padding) of boxes/scores/classes, padded with 0/0/-1."""
  keep = indices >= 0
  idx = jnp.maximum(indices, 0)
  return (jnp.where(keep[:, None], boxes[idx], 0.), jnp.where(keep, scores[idx], 0.),
          jnp.where(keep, classes[idx], -1).astype(jnp.int32))


def multiclass_nms(boxes: jnp.ndarray, scores: jnp.ndarray, score_thr: float = 0.05,
                   iou_thr: float = 0.5, max_per_img: int = 100,
                   max_candidates: int | None = None) -> Detections:
  """mmdet `multiclass_nms` for class-shared boxes [N, 4] and scores [N, C].

  Every (box, class) pair with score > score_thr is a candidate (no background
  column: RetinaNet's sigmoid scores); class-wise greedy NMS at `iou_thr`; the
  top `max_per_img` kept by score. With `max_candidates` (None: all N x C
  pairs, as mmdet) only that many best pairs enter NMS (see the module
  docstring for when this is exact; `Detections.exact` says). Ties in score
  are ordered by (box index, class).
  """
  n, c = scores.shape
  flat = scores.reshape(-1).astype(jnp.float32)
  is_cand = flat > score_thr
  keyed = jnp.where(is_cand, flat, -jnp.inf)
  if max_candidates is None or max_candidates >= n * c:
    k = n * c
    flat_idx = jnp.argsort(-keyed, stable=True)  # = top_k of everything, ties by index.
    top = keyed[flat_idx]
  else:
    k = max_candidates
    top, flat_idx = jax.lax.top_k(keyed, k)
  cand_valid = top > score_thr
  box_idx, cand_cls = flat_idx // c, (flat_idx % c).astype(jnp.int32)
  cand_boxes = boxes[box_idx].astype(jnp.float32)
  pos, count = _greedy_sorted(cand_boxes, cand_cls, cand_valid, iou_thr, max_per_img)
  out_boxes, out_scores, out_cls = gather_detections(cand_boxes, top, cand_cls, pos)
  exact = (is_cand.sum() <= k) | (count >= max_per_img)
  return Detections(out_boxes, out_scores, out_cls, count, exact)


def topk_per_level(scores: jnp.ndarray, level_counts: Sequence[int],
                   nms_pre: int = 1000) -> jnp.ndarray:
  """Per-level pre-selection of RetinaNet inference (mmdet `get_bboxes`).

  `scores` [N, C] are the sigmoid class scores in the (level, y, x, anchor)
  order, `level_counts` the static anchors per level. Per level, the
  min(nms_pre, N_l) anchors with the highest max-over-classes score are kept
  (a level with <= nms_pre anchors keeps all, as mmdet). Returns int32 indices
  into N, [sum_l min(nms_pre, N_l)], level by level, each by decreasing score.
  Gather anchors, deltas and scores with them, decode, then `multiclass_nms`.
  """
  assert sum(level_counts) == scores.shape[0], (level_counts, scores.shape)
  max_scores = scores.max(axis=-1)
  out, start = [], 0
  for count in level_counts:
    _, idx = jax.lax.top_k(max_scores[start:start + count], min(nms_pre, count))
    out.append(idx.astype(jnp.int32) + start)
    start += count
  return jnp.concatenate(out, axis=0)
