"""RetinaNet anchors and MaxIoU assignment vs mmdetection 2.13 (AnchorGenerator
values and layout; MaxIoUAssigner transcribed with loops)."""
import math

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.tasks.detection.ops import anchors
from vision_jax.tasks.detection.ops import assign
from vision_jax.tasks.detection.ops import boxes as box_ops

# mmdet AnchorGenerator(octave_base_scale=4, scales_per_octave=3, ratios=[.5, 1, 2],
# strides=[8, ...]), level 0, computed by hand from its formula: base_size 8,
# scales 4 * 2**(k/3), h_ratio = sqrt(r), w_ratio = 1/h_ratio, w = 8 * w_ratio * scale,
# h = 8 * h_ratio * scale, ratio-outer / scale-inner ("scale_major"), centred at (0, 0)
# (center_offset 0): (-w/2, -h/2, w/2, h/2).
P3_BASE = [
    [-22.627417, -11.313708, 22.627417, 11.313708],  # ratio 0.5, scale 4
    [-28.508759, -14.254379, 28.508759, 14.254379],  # ratio 0.5, scale 4 * 2^(1/3)
    [-35.918786, -17.959393, 35.918786, 17.959393],  # ratio 0.5, scale 4 * 2^(2/3)
    [-16.000000, -16.000000, 16.000000, 16.000000],  # ratio 1
    [-20.158737, -20.158737, 20.158737, 20.158737],
    [-25.398417, -25.398417, 25.398417, 25.398417],
    [-11.313708, -22.627417, 11.313708, 22.627417],  # ratio 2 (h = 2 w)
    [-14.254379, -28.508759, 14.254379, 28.508759],
    [-17.959393, -35.918786, 17.959393, 35.918786],
]
SIZES_800x1344 = ((100, 168), (50, 84), (25, 42), (13, 21), (7, 11))


def test_p3_base_anchors_match_mmdet():
  p3 = jax.jit(anchors.base_anchors, static_argnums=0)(8)
  np.testing.assert_allclose(p3, P3_BASE, rtol=1e-6, atol=1e-5)
  # Other levels scale with the stride.
  np.testing.assert_allclose(anchors.base_anchors(128), np.array(P3_BASE) * 16, rtol=1e-6)


def test_multilevel_count_and_order_at_800x1344():
  assert anchors.feature_sizes((800, 1344)) == SIZES_800x1344
  all_anchors = np.asarray(jax.jit(lambda: anchors.multilevel_anchors(SIZES_800x1344))())
  assert all_anchors.shape == (201_600, 4)
  assert anchors.level_counts(SIZES_800x1344) == (151_200, 37_800, 9_450, 2_457, 693)
  # (level, y, x, anchor): level 1 (stride 16), y 3, x 5, anchor 4.
  idx = 151_200 + (3 * 84 + 5) * 9 + 4
  np.testing.assert_allclose(all_anchors[idx],
                             np.array(P3_BASE[4]) * 2 + [5 * 16, 3 * 16, 5 * 16, 3 * 16],
                             rtol=1e-6)
  # Last anchor: level 4 (stride 128), y 6, x 10, anchor 8.
  np.testing.assert_allclose(all_anchors[-1],
                             np.array(P3_BASE[8]) * 16 + [1280, 768, 1280, 768], rtol=1e-6)
  # Within a level x runs faster than y: the next cell along x is +stride in x only.
  np.testing.assert_allclose(all_anchors[9] - all_anchors[0], [8, 0, 8, 0], atol=1e-5)
  np.testing.assert_allclose(all_anchors[168 * 9] - all_anchors[0], [0, 8, 0, 8], atol=1e-5)


def _valid_flags_loop(sizes, strides, pad_hw, num_base=9):
  out = []
  for (fh, fw), s in zip(sizes, strides):
    vh, vw = min(math.ceil(pad_hw[0] / s), fh), min(math.ceil(pad_hw[1] / s), fw)
    for y in range(fh):
      for x in range(fw):
        out += [y < vh and x < vw] * num_base
  return np.array(out)


def test_valid_mask_per_image_under_vmap():
  sizes = ((16, 24), (8, 12), (4, 6), (2, 3), (1, 2))  # a 128x192 canvas.
  image_sizes = jnp.array([[100, 150], [128, 192], [37, 65]], jnp.int32)
  masks = jax.jit(jax.vmap(lambda s: anchors.valid_anchor_mask(sizes, s)))(image_sizes)
  for m, (h, w) in zip(np.asarray(masks), np.asarray(image_sizes)):
    pad = (math.ceil(h / 32) * 32, math.ceil(w / 32) * 32)  # mmdet pad_shape.
    np.testing.assert_array_equal(m, _valid_flags_loop(sizes, anchors.RETINANET_STRIDES, pad))
  assert masks[1].all() and not masks[2].all()
  # Without the pad rounding, P3 cells beyond ceil(37 / 8) = 5 rows become invalid.
  raw = jax.jit(lambda s: anchors.valid_anchor_mask(sizes, s, size_divisor=1))(image_sizes[2])
  np.testing.assert_array_equal(raw, _valid_flags_loop(sizes, anchors.RETINANET_STRIDES, (37, 65)))
  assert raw.sum() < masks[2].sum()


# ---------------------------------------------------------------- assignment

_iou = jax.jit(box_ops.pairwise_iou)
_assign_overlaps = jax.jit(assign.assign_wrt_overlaps,
                           static_argnames=("gt_max_assign_all", "match_low_quality"))


def _mmdet_assign_loop(overlaps, gt_valid, anchor_valid, pos_thr=.5, neg_thr=.4, min_pos=0.,
                       assign_all=True, low_quality=True):
  """mmdet MaxIoUAssigner.assign_wrt_overlaps transcribed with loops, run on the
  valid GTs and valid anchors only (as mmdet sees them), mapped back to codes."""
  gi, ai = np.flatnonzero(gt_valid), np.flatnonzero(anchor_valid)
  ov = overlaps[np.ix_(gi, ai)]
  num_gts, num_b = ov.shape
  res = np.full(num_b, -1)  # mmdet: -1 ignore, 0 negative, k + 1 = gt k.
  if num_gts == 0:
    res[:] = 0
  elif num_b:
    for b in range(num_b):
      col = ov[:, b]
      best = int(np.argmax(col))  # first max, as torch.max.
      if 0 <= col[best] < neg_thr:
        res[b] = 0
      if col[best] >= pos_thr:
        res[b] = best + 1
    if low_quality:
      for g in range(num_gts):
        gmax = ov[g].max()
        if gmax >= min_pos:
          if assign_all:
            for b in range(num_b):
              if ov[g, b] == gmax:
                res[b] = g + 1
          else:
            res[int(np.argmax(ov[g]))] = g + 1
  out = np.full(overlaps.shape[1], assign.IGNORE)
  for b, r in zip(ai, res):
    out[b] = gi[r - 1] if r > 0 else (assign.NEGATIVE if r == 0 else assign.IGNORE)
  return out


def _assign_case(seed):
  rng = np.random.default_rng(seed)
  xy = rng.integers(0, 64, (300, 2))
  wh = rng.integers(4, 32, (300, 2))
  anc = np.concatenate([xy, xy + wh], 1)
  anc = np.concatenate([anc, anc[:40]])  # duplicates -> tied row maxima.
  special = [[100, 100, 110, 105],   # IoU exactly 0.5 with gt [100, 100, 110, 110].
             [100, 100, 110, 104],   # IoU exactly 0.4 -> ignored, not negative.
             [215, 215, 250, 250]]   # the only (weak, 0.118) overlap of gt [200, 200, 230, 230].
  anc = np.concatenate([anc, special]).astype(np.float32)
  gts = np.zeros((10, 4), np.float32)
  gts[0] = [5, 5, 40, 30]
  gts[1] = anc[7]                        # padding row holding a perfect match: never used.
  gts[2] = [30, 10, 60, 50]
  gts[3] = [10, 30, 34, 70]
  gts[5] = gts[3]                        # identical GTs: argmax -> 3, low quality -> 5.
  gts[6] = [100, 100, 110, 110]
  gts[7] = [200, 200, 230, 230]          # overlapped by nothing above 0.4.
  gts[8] = rng.integers(0, 40, 4).astype(np.float32)
  gts[8, 2:] = gts[8, :2] + rng.integers(8, 30, 2)
  gt_valid = np.array([1, 0, 1, 1, 0, 1, 1, 1, 1, 0], bool)
  anchor_valid = rng.random(len(anc)) < 0.85
  anchor_valid[-3:] = True
  return anc, gts, gt_valid, anchor_valid


def test_assigner_matches_mmdet_loops():
  for seed in range(3):
    anc, gts, gt_valid, anchor_valid = _assign_case(seed)
    got = np.asarray(jax.jit(assign.max_iou_assign)(anc, gts, gt_valid, anchor_valid))
    overlaps = np.asarray(_iou(gts, anc))
    np.testing.assert_array_equal(got, _mmdet_assign_loop(overlaps, gt_valid, anchor_valid))
    assert set(np.unique(got)) <= {-2, -1, 0, 2, 3, 5, 6, 7, 8}   # never padding 1, 4, 9.
    assert list(got[-3:]) == [6, assign.IGNORE, 7]  # threshold ties, low-quality match.
    # gt 5 (identical to gt 3, later) overwrote gt 3 at gt 3's best anchors.
    best = (overlaps[3] == overlaps[3][anchor_valid].max()) & anchor_valid
    assert best.any() and np.all(got[best] == 5)
    assert np.all(got[~anchor_valid] == assign.IGNORE)
    first = _assign_overlaps(overlaps, gt_valid, anchor_valid, gt_max_assign_all=False)
    np.testing.assert_array_equal(first, _mmdet_assign_loop(overlaps, gt_valid, anchor_valid,
                                                            assign_all=False))
    no_lq = _assign_overlaps(overlaps, gt_valid, anchor_valid, match_low_quality=False)
    np.testing.assert_array_equal(no_lq, _mmdet_assign_loop(overlaps, gt_valid, anchor_valid,
                                                            low_quality=False))
    assert no_lq[-1] == assign.NEGATIVE


def test_assigner_vmap_no_gt_and_unmatched_gt_quirk():
  anc, gts, gt_valid, anchor_valid = _assign_case(0)
  batch = jax.jit(jax.vmap(assign.max_iou_assign, in_axes=(None, 0, 0, 0)))(
      anc, np.stack([gts, gts]), np.stack([gt_valid, np.zeros_like(gt_valid)]),
      np.stack([anchor_valid, anchor_valid]))
  # No valid GT: every valid anchor is negative.
  np.testing.assert_array_equal(batch[1], np.where(anchor_valid, -1, -2))
  # mmdet quirk (min_pos_iou 0): a valid GT with no overlap at all claims every
  # anchor with IoU 0 to it.
  far = np.array([[500, 500, 520, 520]], np.float32)
  got = jax.jit(assign.max_iou_assign)(anc[:50], far, np.array([True]))
  overlaps = np.asarray(_iou(far, anc[:50]))
  np.testing.assert_array_equal(got, _mmdet_assign_loop(overlaps, [True], np.ones(50, bool)))
  assert np.all(np.asarray(got) == 0)


def test_anchor_targets():
  anc = jnp.array([[0., 0., 10., 10.], [0., 0., 10., 3.5], [50., 50., 60., 60.], [0., 0., 1., 1.]])
  gts = jnp.array([[0., 0., 10., 8.], [0., 0., 0., 0.]])
  classes = jnp.array([3, -1])

  @jax.jit
  def targets(anc, gts, classes):
    matched = assign.max_iou_assign(anc, gts, jnp.array([True, False]))
    return matched, assign.anchor_targets(anc, gts, classes, matched, num_classes=5)

  matched, t = targets(anc, gts, classes)
  np.testing.assert_array_equal(matched, [0, assign.IGNORE, assign.NEGATIVE, assign.NEGATIVE])
  np.testing.assert_array_equal(t["cls_targets"][0], [0, 0, 0, 1, 0])
  assert float(t["cls_targets"][1:].sum()) == 0.
  np.testing.assert_array_equal(t["cls_weights"], [1, 0, 1, 1])
  np.testing.assert_array_equal(t["box_weights"], [1, 0, 0, 0])
  np.testing.assert_allclose(t["box_targets"][0], [0, -0.1, 0, math.log(0.8)], atol=1e-6)
  assert np.all(t["box_targets"][1:] == 0.) and int(t["num_pos"]) == 1


def _numpy_iou(boxes1, boxes2):
  """mmdet's `bbox_overlaps` as separate float32 operations (one torch kernel each)."""
  b1, b2 = np.asarray(boxes1, np.float32), np.asarray(boxes2, np.float32)
  lt = np.maximum(b1[:, None, :2], b2[None, :, :2])
  rb = np.minimum(b1[:, None, 2:], b2[None, :, 2:])
  wh = np.maximum(rb - lt, np.float32(0))
  inter = wh[..., 0] * wh[..., 1]
  area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
  area2 = (b2[:, 2] - b2[:, 0]) * (b2[:, 3] - b2[:, 1])
  return inter / np.maximum(area1[:, None] + area2[None, :] - inter, np.float32(1e-6))


def test_iou_and_low_quality_ties_are_mmdets_bit_for_bit_in_any_program():
  """Equal IoUs decide low-quality matches (`==`); fused multiply-adds would
  round them differently in different programs."""
  a = anchors.multilevel_anchors([(50, 84), (25, 42)], (8, 16), 4.0, 3, (0.5, 1.0, 2.0))
  rng = np.random.default_rng(0)
  xy, wh = rng.uniform(0, 600, (30, 2)), rng.uniform(2, 300, (30, 2))
  gt = jnp.asarray(np.concatenate([xy, xy + wh], 1), jnp.float32)
  want = _numpy_iou(gt, a)
  np.testing.assert_array_equal(box_ops.pairwise_iou(gt, a), want)
  np.testing.assert_array_equal(jax.jit(box_ops.pairwise_iou)(gt, a), want)
  valid = jnp.ones((30,), bool)
  run = lambda g: assign.max_iou_assign(a, g, valid)
  eager, jitted = np.asarray(run(gt)), np.asarray(jax.jit(run)(gt))
  batched = np.asarray(jax.jit(jax.vmap(run))(jnp.stack([gt[::-1], gt])))[1]
  np.testing.assert_array_equal(eager, jitted)
  np.testing.assert_array_equal(eager, batched)
  ties = (want == want.max(1, keepdims=True)).sum(1)
  assert ties.max() > 1  # Some GT's best IoU is shared by several anchors.
