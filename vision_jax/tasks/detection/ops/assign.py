"""Max-IoU anchor assignment (RetinaNet, Lin et al., 2017, arXiv:1708.02002,
Sec. 4: IoU >= 0.5 positive, < 0.4 background, in between ignored), exactly as
mmdetection 2.13 `MaxIoUAssigner.assign_wrt_overlaps`, for padded GTs.

mmdet, with IoU matrix O [num_gt, num_anchor] over the image's valid GTs and
its valid ("inside") anchors:
  1. every anchor starts ignored;
  2. anchors with 0 <= max_g O[g, a] < neg_iou_thr become negative;
  3. anchors with max_g O[g, a] >= pos_iou_thr take argmax_g (first max on ties);
  4. (match_low_quality) for g = 0, 1, ... in order, if max_a O[g, a] >=
     min_pos_iou, every anchor with O[g, a] == max_a O[g, a] (all of them when
     gt_max_assign_all, else the first) is assigned to g, overwriting steps 2-3
     and earlier g's: the *last* such g wins.
With no valid GT every valid anchor is negative. Step 4 is vectorised here as
"last g whose row-maximum this anchor attains". Note mmdet's quirk, kept here:
with min_pos_iou = 0 a valid GT that overlaps no valid anchor (row max 0)
claims every anchor with IoU 0 to it; the data pipeline must drop degenerate
boxes (mmdet drops w < 1 or h < 1 when loading COCO).

Codes returned per anchor: index g >= 0 of the matched GT (index into the
padded GT array), NEGATIVE (-1) for background, IGNORE (-2) for anchors in
neither set (between thresholds, or anchors outside the valid mask).
"""
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from vision_jax.tasks.detection.ops import box_coder
from vision_jax.tasks.detection.ops import boxes as box_ops

NEGATIVE = -1
IGNORE = -2


def assign_wrt_overlaps(overlaps: jnp.ndarray, gt_valid: jnp.ndarray,
                        anchor_valid: Optional[jnp.ndarray] = None, pos_iou_thr: float = 0.5,
                        neg_iou_thr: float = 0.4, min_pos_iou: float = 0.,
                        gt_max_assign_all: bool = True,
                        match_low_quality: bool = True) -> jnp.ndarray:
  """Matched GT index / NEGATIVE / IGNORE, int32 [N], from overlaps [M, N].

  `overlaps[g, a]` is the IoU of GT g with anchor a (mmdet's layout);
  `gt_valid` bool [M] marks real GT rows (padding never matches);
  `anchor_valid` bool [N] (default all) marks anchors taking part.
  """
  num_gt, num_anchors = overlaps.shape
  gt_valid = gt_valid.astype(bool)
  if anchor_valid is None:
    anchor_valid = jnp.ones((num_anchors,), bool)
  anchor_valid = anchor_valid.astype(bool)
  # Per anchor: best valid GT (padding rows below any IoU).
  per_anchor = jnp.where(gt_valid[:, None], overlaps, -1.)
  max_ov = per_anchor.max(axis=0)
  argmax_ov = jnp.argmax(per_anchor, axis=0).astype(jnp.int32)
  has_gt = gt_valid.any()
  matched = jnp.full((num_anchors,), IGNORE, jnp.int32)
  negative = ((max_ov >= 0.) & (max_ov < neg_iou_thr)) | ~has_gt
  matched = jnp.where(negative, NEGATIVE, matched)
  matched = jnp.where(has_gt & (max_ov >= pos_iou_thr), argmax_ov, matched)
  if match_low_quality:
    # Per GT: best valid anchor.
    per_gt = jnp.where(anchor_valid[None, :], overlaps, -1.)
    gt_max = per_gt.max(axis=1)
    take = gt_valid & (gt_max >= min_pos_iou)
    if gt_max_assign_all:
      hit = per_gt == gt_max[:, None]
    else:
      first = jnp.argmax(per_gt, axis=1)
      hit = jnp.arange(num_anchors)[None, :] == first[:, None]
    hit = hit & take[:, None] & anchor_valid[None, :]
    # Last GT (highest index) hitting each anchor wins, as mmdet's in-order loop.
    last = num_gt - 1 - jnp.argmax(hit[::-1], axis=0).astype(jnp.int32)
    matched = jnp.where(hit.any(axis=0), last, matched)
  return jnp.where(anchor_valid, matched, IGNORE)


def max_iou_assign(anchors: jnp.ndarray, gt_boxes: jnp.ndarray, gt_valid: jnp.ndarray,
                   anchor_valid: Optional[jnp.ndarray] = None, pos_iou_thr: float = 0.5,
                   neg_iou_thr: float = 0.4, min_pos_iou: float = 0.,
                   gt_max_assign_all: bool = True, match_low_quality: bool = True) -> jnp.ndarray:
  """mmdet `MaxIoUAssigner` (RetinaNet defaults) for anchors [N, 4] and padded
  GTs [M, 4]; returns int32 [N]: GT index, NEGATIVE (-1) or IGNORE (-2).

  Memory is O(M * N) (the IoU matrix), as in mmdet. vmap over images with
  `in_axes=(None, 0, 0, 0)`.
  """
  overlaps = box_ops.pairwise_iou(gt_boxes.astype(jnp.float32), anchors.astype(jnp.float32))
  return assign_wrt_overlaps(overlaps, gt_valid, anchor_valid, pos_iou_thr, neg_iou_thr,
                             min_pos_iou, gt_max_assign_all, match_low_quality)


def anchor_targets(anchors: jnp.ndarray, gt_boxes: jnp.ndarray, gt_classes: jnp.ndarray,
                   matched: jnp.ndarray, num_classes: int,
                   means: Sequence[float] = (0., 0., 0., 0.),
                   stds: Sequence[float] = (1., 1., 1., 1.)) -> dict:
  """Training targets of one image, as mmdet `AnchorHead._get_targets_single`
  with the pseudo sampler (no sampling) and `pos_weight=-1`.

  Returns dict of
    "cls_targets": float32 [N, C] one-hot of the matched class (all zeros for
      background and ignored anchors: mmdet's background label C);
    "cls_weights": float32 [N], 1 for positives and negatives, 0 for ignored;
    "box_targets": float32 [N, 4] deltas to the matched GT (0 where not positive;
      encoded against the anchor itself, so never inf/NaN);
    "box_weights": float32 [N], 1 for positives;
    "num_pos": int32 scalar. mmdet normalises both losses by
      sum over images of max(num_pos, 1) (`num_total_pos`).
  """
  pos = matched >= 0
  idx = jnp.maximum(matched, 0)
  gt = jnp.where(pos[:, None], gt_boxes[idx].astype(jnp.float32), anchors)
  labels = jnp.where(pos, gt_classes[idx], -1)
  return {
      "cls_targets": jax.nn.one_hot(labels, num_classes, dtype=jnp.float32),
      "cls_weights": (pos | (matched == NEGATIVE)).astype(jnp.float32),
      "box_targets": box_coder.encode(anchors, gt, means, stds),
      "box_weights": pos.astype(jnp.float32),
      "num_pos": pos.sum().astype(jnp.int32),
  }
