"""CULane F-measure (Pan et al., AAAI 2018, Sec. 5.1) of a lane model over a
split: the task's "lane_rows" predictions (the 18 sampled rows of the
smoothed lane maps and the existence probabilities) are decoded on the host
by prob2lines (`decode`) and compared with the ground-truth lanes
("lanes/points", original pixels) by the official metric (`culane`)."""
from typing import Callable, Sequence

import numpy as np

from vision_jax.batch import LANE_POINTS, MASK, SKIPPED
from vision_jax.data import pipeline
from vision_jax.evaluators.base import Evaluator
from vision_jax.tasks.lanes import culane, decode


def ground_truth_lanes(points: np.ndarray) -> list[np.ndarray]:
  """The annotated lanes of one example's points [lanes, P, 2] (NaN = none):
  each lane's finite points, lanes without any dropped."""
  lanes = []
  for lane in np.asarray(points, np.float64):
    lane = lane[np.all(np.isfinite(lane), axis=-1)]
    if len(lane):
      lanes.append(lane)
  return lanes


class LaneF1Evaluator(Evaluator):
  """"f1", "precision", "recall" (and the summed "tp", "fp", "fn") over the `data` split. Real rows (mask 1) only; a
  record the pipeline skipped has no ground truth to count and is reported as
  `skipped_examples`."""
  PREDICT = "lane_rows"

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec,
               original_size: Sequence[int] = decode.CULANE_SIZE, row_gap: int = decode.ROW_GAP,
               exist_threshold: float = 0.5, threshold: float = 0.3,
               lane_width: int = culane.LANE_WIDTH, iou_threshold: float = culane.IOU_THRESHOLD):
    super().__init__(predict_fn, data=data)
    self.original_size, self.row_gap = tuple(original_size), row_gap
    self.thresholds = {"exist_threshold": exist_threshold, "threshold": threshold}
    self.lane_width, self.iou_threshold = lane_width, iou_threshold

  def detections(self, out: dict, row: int) -> list[np.ndarray]:
    """prob2lines of one row of the predictions ("lane_rows" or full "lane_probs")."""
    kwargs = dict(original_size=self.original_size, gap=self.row_gap, **self.thresholds)
    if "lane_rows" in out:
      return decode.lanes_from_rows(np.asarray(out["lane_rows"][row]),
                                    np.asarray(out["exist_probs"][row]), **kwargs)
    return decode.prob2lines(np.asarray(out["lane_probs"][row]),
                             np.asarray(out["exist_probs"][row]), **kwargs)

  def add_batch(self, counter: culane.Counter, out: dict) -> int:
    """Adds the real rows of one batch's host predictions; returns their number."""
    if LANE_POINTS not in out:
      raise ValueError(f"The predictions have no {LANE_POINTS!r}: the split's pp must keep "
                       "the ground-truth lanes.")
    rows = np.nonzero(np.asarray(out[MASK]) > 0)[0]
    points = np.asarray(out[LANE_POINTS])
    for row in rows:
      counter.add(ground_truth_lanes(points[row]), self.detections(out, row))
    return len(rows)

  def run(self, variables) -> dict[str, float]:
    num_examples, batches = pipeline.eval_batches(self.data)
    counter = culane.Counter(self.lane_width, self.iou_threshold,
                             (int(self.original_size[0]), int(self.original_size[1])))
    counted = skipped = 0
    for batch in batches:
      out = self.predict_fn(variables, batch)
      counted += self.add_batch(counter, out)
      skipped += int(np.sum(out[SKIPPED]))
    if counted + skipped != num_examples:
      raise RuntimeError(f"Evaluated {counted} (+{skipped} skipped) examples of "
                         f"{self.data.name}:{self.data.split}, expected {num_examples}.")
    metrics = {k: float(v) for k, v in counter.result().items()}
    metrics.update({"tp": float(counter.tp), "fp": float(counter.fp), "fn": float(counter.fn)})
    if skipped:
      metrics["skipped_examples"] = float(skipped)
    return metrics
