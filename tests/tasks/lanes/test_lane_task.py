"""Lane task: the SCNN loss against NumPy (weighted CE with ignored pixels +
0.1 BCE), exactness under gradient accumulation, predictions, prob2lines and
the evaluator's per-batch counting."""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.batch import LANE_EXIST, LANE_POINTS, MASK, SEGMENTATION, SKIPPED
from vision_jax.tasks.lanes import culane, decode
from vision_jax.tasks.lanes.evaluator import LaneF1Evaluator, ground_truth_lanes
from vision_jax.tasks.lanes.task import LaneTask

WEIGHTS = np.array([0.4, 1.0, 1.0, 1.0, 1.0])


def tiny_batch(seed=0, b=4, h=3, w=5):
  rng = np.random.default_rng(seed)
  seg = rng.integers(0, 5, (b, h, w)).astype(np.uint8)
  seg[rng.random((b, h, w)) < 0.3] = 255
  batch = {SEGMENTATION: seg, LANE_EXIST: (rng.random((b, 4)) < 0.5).astype(np.float32),
           MASK: np.array([1, 1, 1, 0], np.float32)[:b]}
  outputs = {"logits": rng.normal(size=(b, h, w, 5)).astype(np.float32) * 2,
             "exist": rng.normal(size=(b, 4)).astype(np.float32) * 2}
  return outputs, batch


def numpy_loss(outputs, batch):
  real = batch[MASK] > 0
  logits = outputs["logits"][real].astype(np.float64)
  seg = batch[SEGMENTATION][real].astype(np.int64)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  valid = seg != 255
  y = seg[valid]
  ce = -log_p[valid][np.arange(len(y)), y]
  seg_loss = np.sum(WEIGHTS[y] * ce) / np.sum(WEIGHTS[y])
  p = 1 / (1 + np.exp(-outputs["exist"][real].astype(np.float64)))
  t = batch[LANE_EXIST][real]
  bce = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
  return seg_loss + 0.1 * bce, seg_loss, bce


def test_loss_is_weighted_ce_plus_a_tenth_of_bce():
  outputs, batch = tiny_batch()
  want, want_seg, want_bce = numpy_loss(outputs, batch)
  loss, metrics = LaneTask().loss(outputs, {}, batch)
  np.testing.assert_allclose(loss, want, rtol=1e-5)
  np.testing.assert_allclose(metrics["seg_loss"], want_seg, rtol=1e-5)
  np.testing.assert_allclose(metrics["exist_loss"], want_bce, rtol=1e-5)
  unweighted = LaneTask(class_weights=(1, 1, 1, 1, 1)).loss(outputs, {}, batch)[1]["seg_loss"]
  assert abs(float(unweighted) - want_seg) > 1e-3  # The 0.4 background weight matters.


def test_micro_batch_losses_add_up_to_the_batch_loss():
  task = LaneTask()
  outputs, batch = tiny_batch(seed=1)
  whole = task.normalizers({}, batch)
  np.testing.assert_allclose(whole["examples"], 3.0)
  halves = [jax.tree.map(lambda x: x[i::2], d) for i in range(2) for d in (outputs, batch)]
  parts = [task.loss(halves[2 * i], {}, halves[2 * i + 1], whole) for i in range(2)]
  full_loss, full_metrics = task.loss(outputs, {}, batch)
  np.testing.assert_allclose(parts[0][0] + parts[1][0], full_loss, rtol=1e-5)
  for name in ("seg_loss", "exist_loss", "exist_accuracy"):
    np.testing.assert_allclose(parts[0][1][name] + parts[1][1][name], full_metrics[name],
                               rtol=1e-5)
  own = task.loss(halves[0], {}, halves[1])[0]  # Without the step's normalizers: its own mean.
  assert abs(float(own) - float(parts[0][0])) > 1e-3


def test_predictions_are_smoothed_lane_maps_and_their_rows():
  task = LaneTask()
  rng = np.random.default_rng(2)
  outputs = {"logits": jnp.asarray(rng.normal(size=(1, 40, 30, 5)), jnp.float32),
             "exist": jnp.asarray([[0.0, 3.0, -3.0, 1.0]])}
  batch = {LANE_POINTS: np.zeros((1, 4, 2, 2), np.float32)}
  out = task.predict(outputs, {}, batch)
  probs = np.asarray(jax.nn.softmax(outputs["logits"], -1))[0, ..., 1:]
  np.testing.assert_allclose(out["lane_probs"][0, 10, 12], probs[6:15, 8:17].mean((0, 1)),
                             rtol=1e-5)
  np.testing.assert_allclose(out["lane_probs"][0, 0, 0], probs[:5, :5].sum((0, 1)) / 81,
                             rtol=1e-5)  # Zero padding, divided by 81.
  np.testing.assert_allclose(out["exist_probs"], jax.nn.sigmoid(outputs["exist"]))
  rows = task.lane_rows(outputs, {}, batch)
  np.testing.assert_array_equal(rows["lane_rows"][0], out["lane_probs"][0, decode.sample_rows(40)])
  assert rows[LANE_POINTS].shape == (1, 4, 2, 2)


def test_prob2lines_follows_getlane():
  rows = decode.sample_rows(288)
  assert rows[0] == 287 and rows[17] == 121 and len(rows) == 18
  probs = np.zeros((288, 800, 4), np.float32)
  probs[:, 399, 0] = 0.9  # Lane 1: a column at x = 399 of 800.
  probs[:, 100, 1] = 0.9  # Lane 2: exists in the map but not by its probability.
  probs[287, 700, 3] = 0.9  # Lane 4: one row only.
  probs[:, 200, 2] = 0.25  # Lane 3: below the 0.3 threshold.
  lanes = decode.prob2lines(probs, np.array([0.9, 0.4, 0.9, 0.9]))
  assert len(lanes) == 1
  np.testing.assert_array_equal(lanes[0][:, 0], 819)  # round(400 * 1640 / 800) - 1.
  np.testing.assert_array_equal(lanes[0][:, 1], 589 - 20 * np.arange(18))


def test_evaluator_counts_real_rows_against_ground_truth():
  evaluator = LaneF1Evaluator(lambda *a, **k: None, data=None)
  row_probs = np.zeros((2, 18, 800, 4), np.float32)
  row_probs[:, :, 399, 0] = 0.9
  points = np.full((2, 4, 18, 2), np.nan, np.float32)
  points[:, 0, :, 0], points[:, 0, :, 1] = 819, 589 - 20 * np.arange(18)
  points[0, 1, :3] = [[100, 589], [110, 569], [120, 549]]  # Missed: a FN on row 0.
  out = {"lane_rows": row_probs, "exist_probs": np.full((2, 4), 0.9, np.float32),
         LANE_POINTS: points, MASK: np.array([1, 0], np.float32), SKIPPED: np.zeros(2)}
  assert [len(lane) for lane in ground_truth_lanes(points[0])] == [18, 3]
  counter = culane.Counter()
  assert evaluator.add_batch(counter, out) == 1
  assert (counter.tp, counter.fp, counter.fn) == (1, 0, 1)
