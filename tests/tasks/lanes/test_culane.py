"""The CULane metric on synthetic lanes with known answers, and its spline
against a transcription of the official spline.cpp."""
import numpy as np

from vision_jax.tasks.lanes import culane

YS = 589 - 20 * np.arange(15)


def vertical(x, ys=YS):
  return np.stack([np.full(len(ys), float(x)), ys.astype(float)], axis=1)


def curved(x0, bend=0.002):
  return np.stack([x0 + bend * (589 - YS) ** 2, YS.astype(float)], axis=1)


def official_spline(points, times=50):
  """spline.cpp's cal_fun (natural spline, chord length, Thomas algorithm) + splineInterpTimes."""
  p = np.asarray(points, np.float64)
  n = len(p)
  h = np.linalg.norm(p[1:] - p[:-1], axis=1)
  a, b, c = h[:-1].copy(), 2 * (h[:-1] + h[1:]), h[1:].copy()
  d = 6 * ((p[2:] - p[1:-1]) / h[1:, None] - (p[1:-1] - p[:-2]) / h[:-1, None])
  c[0], d[0] = c[0] / b[0], d[0] / b[0]
  for i in range(1, n - 2):
    tmp = b[i] - a[i] * c[i - 1]
    c[i], d[i] = c[i] / tmp, (d[i] - a[i] * d[i - 1]) / tmp
  m = np.zeros((n, 2))
  m[n - 2] = d[n - 3]
  for i in range(n - 4, -1, -1):
    m[i + 1] = d[i] - c[i] * m[i + 2]
  out = []
  for i in range(n - 1):
    bb = (p[i + 1] - p[i]) / h[i] - (2 * h[i] * m[i] + h[i] * m[i + 1]) / 6
    for k in range(times):
      t = h[i] / times * k
      out.append(p[i] + bb * t + m[i] / 2 * t ** 2 + (m[i + 1] - m[i]) / (6 * h[i]) * t ** 3)
  return np.array(out + [p[-1]])


def test_spline_is_the_official_one():
  rng = np.random.default_rng(0)
  for n in (3, 4, 9):
    pts = np.stack([700 + np.cumsum(rng.normal(0, 20, n)), 589 - 20 * np.arange(n)], 1)
    got = culane.interpolate(pts)
    assert got.shape == ((n - 1) * 50 + 1, 2)
    np.testing.assert_allclose(got, official_spline(pts), rtol=1e-9, atol=1e-7)
    np.testing.assert_allclose(got[::50], pts, atol=1e-9)  # Through the knots.
  two = np.array([[10.0, 20.0], [30.0, 40.0]])
  np.testing.assert_array_equal(culane.interpolate(two), two)


def test_stroke_is_31_px_across_like_opencv():
  mask = culane.rasterize([[100.0, 300.0], [500.0, 300.0]]).mask
  assert mask[:, 300].sum() == 31 and np.nonzero(mask[:, 300])[0][[0, -1]].tolist() == [285, 315]
  assert np.nonzero(mask[300])[0][[0, -1]].tolist() == [85, 515]  # Round caps of radius 15.


def test_identical_lanes_give_f1_one():
  counter = culane.Counter()
  gt = [vertical(400), curved(900), vertical(1300)]
  assert counter.add(gt, [lane.copy() for lane in gt[::-1]]) == (3, 0, 0)
  assert counter.add([curved(200)], [curved(200)]) == (1, 0, 0)
  assert counter.result() == {"precision": 1.0, "recall": 1.0, "f1": 1.0}


def test_a_lane_shifted_past_the_width_is_one_fp_and_one_fn():
  assert culane.iou_matrix([vertical(500)], [vertical(540)])[0, 0] == 0.0
  assert culane.count_image([vertical(500)], [vertical(540)]) == (0, 1, 1)
  assert culane.count_image([vertical(500), curved(900)], [vertical(540), curved(902)]) == (1, 1, 1)


def test_iou_threshold_is_strict():
  ious = [culane.iou_matrix([vertical(500)], [vertical(500 + s)])[0, 0] for s in (10, 11)]
  assert ious[0] > 0.5 > ious[1]  # About (31 - s) / (31 + s) for long vertical strokes.
  assert culane.count_image([vertical(500)], [vertical(510)]) == (1, 0, 0)
  assert culane.count_image([vertical(500)], [vertical(511)]) == (0, 1, 1)
  assert culane.match(np.array([[0.5]])) == 0
  assert culane.match(np.array([[0.5 + 1e-9]])) == 1
  assert culane.match(np.array([[0.7]]), iou_threshold=0.7) == 0


def test_hungarian_matching_beats_greedy():
  similarity = np.array([[0.9, 0.8], [0.85, 0.1]])  # Greedy takes 0.9, then 0.1: 1 TP.
  assert culane.match(similarity) == 2
  assert culane.match(np.array([[0.9, 0.8, 0.0]])) == 1  # More detections than lanes.


def test_counts_are_summed_over_the_list_before_scoring():
  counter = culane.Counter()
  counter.add([vertical(300), vertical(800)], [vertical(300), vertical(801)])  # 2 TP.
  counter.add([], [vertical(600)])  # 1 FP.
  counter.add([vertical(600), np.array([[5.0, 5.0]])], [vertical(600)])  # 1 TP, 1-point lane: FN.
  assert (counter.tp, counter.fp, counter.fn) == (3, 1, 1)
  got = counter.result()
  np.testing.assert_allclose([got["precision"], got["recall"], got["f1"]], [0.75, 0.75, 0.75])
  assert culane.scores(0, 0, 4) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}
