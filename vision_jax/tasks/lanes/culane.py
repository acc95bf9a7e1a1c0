"""The CULane lane metric (Pan et al., AAAI 2018, Sec. 5.1), as the official
C++ evaluator computes it (XingangPan/SCNN tools/lane_evaluation: spline.cpp,
lane_compare.cpp, counter.cpp, evaluate.cpp, run.sh):

- a lane of more than 2 points is interpolated by a natural cubic spline in
  its chord-length parameter (spline.cpp's `cal_fun` + `splineInterpTimes`:
  50 points per knot interval, then the last knot); 2-point lanes stay as is;
- it is drawn as a polyline of thickness 30 on a 1640 x 590 canvas; OpenCV's
  `cv::line` there rounds the points to integers and fills, per segment, the
  rectangle offset +-15 (inclusive: 31 px across) with discs of radius 15 at
  both ends. Here the rasteriser is PIL's ImageDraw: one
  `line(width=31, joint="curve")` through the rounded points (rounded joints)
  plus a disc of radius 15 at both ends. Against OpenCV 5's `cv::line` on
  synthetic lanes the masks agree to IoU 0.997 on straight lanes and
  0.975-0.98 on curved ones (pixel rounding at the joints);
- IoU of two lanes = |A & B| / |A | B| of their pixel masks;
- per image, ground truth and detections are matched one to one maximising
  the total IoU (the official Kuhn-Munkres; here
  scipy.optimize.linear_sum_assignment); a matched pair is a TP if its IoU is
  > 0.5 (strict); FP = #detections - TP, FN = #ground truth - TP;
- TP, FP, FN are summed over the image list; P = TP / (TP + FP),
  R = TP / (TP + FN), F = 2PR / (P + R).

Lanes with fewer than 2 points have IoU 0 with every lane (as
`get_lane_similarity`) but still count. Differences: consecutive repeated
points are dropped before the spline (the official divides by their zero
distance); an empty denominator gives 0 instead of the official -1.
"""
import dataclasses
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import interpolate as scipy_interpolate
from scipy import optimize

CANVAS = (590, 1640)  # (height, width) of the canvas: CULane's image size.
LANE_WIDTH = 30  # Stroke width in pixels (run.sh's w_lane).
IOU_THRESHOLD = 0.5  # A matched pair is a TP if IoU > this (run.sh's iou).
TIMES = 50  # Interpolated points per knot interval.


def _drop_repeats(points: np.ndarray) -> np.ndarray:
  """points [n, 2] without points equal to their predecessor."""
  if len(points) < 2:
    return points
  keep = np.concatenate([[True], np.any(points[1:] != points[:-1], axis=1)])
  return points[keep]


def interpolate(points, times: int = TIMES) -> np.ndarray:
  """spline.cpp's `splineInterpTimes` for lanes of > 2 points: a natural cubic
  spline x(t), y(t) in the chord length t, sampled `times` times per interval
  (t_i + k h_i / times, k < times), then the last point. 2 points: unchanged."""
  points = _drop_repeats(np.asarray(points, np.float64).reshape(-1, 2))
  if len(points) <= 2:
    return points
  h = np.linalg.norm(np.diff(points, axis=0), axis=1)
  t = np.concatenate([[0.0], np.cumsum(h)])
  spline = scipy_interpolate.CubicSpline(t, points, axis=0, bc_type="natural")
  samples = (t[:-1, None] + h[:, None] * (np.arange(times) / times)[None]).ravel()
  return np.concatenate([spline(samples), points[-1:]], axis=0)


@dataclasses.dataclass(frozen=True)
class LaneMask:
  """A lane's pixel mask on the canvas and its pixel count."""
  mask: np.ndarray | None  # bool [H, W]; None for a lane of < 2 points.
  area: int


def rasterize(points, width: int = LANE_WIDTH, canvas: Sequence[int] = CANVAS,
              times: int = TIMES) -> LaneMask:
  """The lane's interpolated polyline drawn `width` px wide (module docstring)."""
  points = np.asarray(points, np.float64).reshape(-1, 2)
  if len(points) < 2:
    return LaneMask(None, 0)
  pixels = _drop_repeats(np.rint(interpolate(points, times)).astype(np.int64))
  image = Image.new("L", (int(canvas[1]), int(canvas[0])), 0)
  draw = ImageDraw.Draw(image)
  xy = [tuple(p) for p in pixels.tolist()]
  if len(xy) > 1:
    draw.line(xy, fill=1, width=width + 1, joint="curve")  # OpenCV's width + 1 px across.
  r = width // 2
  for x, y in (xy[0], xy[-1]):
    draw.ellipse((x - r, y - r, x + r, y + r), fill=1)
  mask = np.asarray(image, bool)
  return LaneMask(mask, int(np.count_nonzero(mask)))


def iou(a: LaneMask, b: LaneMask) -> float:
  """Pixel IoU of two rasterised lanes (0 when either has < 2 points or both are empty)."""
  if a.mask is None or b.mask is None:
    return 0.0
  inter = int(np.count_nonzero(a.mask & b.mask))
  union = a.area + b.area - inter
  return inter / union if union > 0 else 0.0


def iou_matrix(gt: Sequence, det: Sequence, width: int = LANE_WIDTH,
               canvas: Sequence[int] = CANVAS) -> np.ndarray:
  """IoU [#gt, #det] of every ground-truth lane with every detection."""
  gt_masks = [rasterize(lane, width, canvas) for lane in gt]
  det_masks = [rasterize(lane, width, canvas) for lane in det]
  return np.array([[iou(g, d) for d in det_masks] for g in gt_masks],
                  np.float64).reshape(len(gt), len(det))


def match(similarity: np.ndarray, iou_threshold: float = IOU_THRESHOLD) -> int:
  """TPs of one image: the matched pairs of the maximum-total-IoU one-to-one
  assignment whose IoU is > `iou_threshold`."""
  if similarity.size == 0:
    return 0
  rows, cols = optimize.linear_sum_assignment(similarity, maximize=True)
  return int(np.sum(similarity[rows, cols] > iou_threshold))


def count_image(gt: Sequence, det: Sequence, *, width: int = LANE_WIDTH,
                iou_threshold: float = IOU_THRESHOLD,
                canvas: Sequence[int] = CANVAS) -> tuple[int, int, int]:
  """(TP, FP, FN) of one image (counter.cpp's `count_im_pair`); lanes are
  sequences of (x, y) points in canvas pixels."""
  tp = match(iou_matrix(gt, det, width, canvas), iou_threshold) if len(gt) and len(det) else 0
  return tp, len(det) - tp, len(gt) - tp


def scores(tp: int, fp: int, fn: int) -> dict[str, float]:
  """Precision, recall and F-measure of summed counts (0 for an empty denominator)."""
  precision = tp / (tp + fp) if tp + fp else 0.0
  recall = tp / (tp + fn) if tp + fn else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1}


@dataclasses.dataclass
class Counter:
  """TP, FP, FN summed over a list of images (evaluate.cpp's totals)."""
  width: int = LANE_WIDTH
  iou_threshold: float = IOU_THRESHOLD
  canvas: tuple[int, int] = CANVAS
  tp: int = 0
  fp: int = 0
  fn: int = 0

  def add(self, gt: Sequence, det: Sequence) -> tuple[int, int, int]:
    counts = count_image(gt, det, width=self.width, iou_threshold=self.iou_threshold,
                         canvas=self.canvas)
    self.tp, self.fp, self.fn = self.tp + counts[0], self.fp + counts[1], self.fn + counts[2]
    return counts

  def result(self) -> dict[str, float]:
    return scores(self.tp, self.fp, self.fn)
