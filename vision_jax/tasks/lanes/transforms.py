"""Lane pp op: a `data.lane_folder` record -> the arrays the lane task and
the CULane evaluator read, checked so a malformed record is skipped and
counted by the pipeline.

- "segmentation" uint8 [H, W]: the lane-segmentation PNG (0 background,
  k = lane slot k; CULane's laneseg_label_w16), checked against the image's
  size and the number of slots; `segmentation=False` (lists without labels,
  e.g. CULane's test list) leaves it out;
- "lanes/exist" float32 [slots]: the list's existence flags;
- "lanes/points" float32 [max_lanes, max_points, 2]: the .lines.txt lanes
  as (x, y) in original pixels, NaN-padded (the evaluator's ground truth);
- "image/original_size" (and "image/size") int32 [2].

The geometric ops of `vision_jax.tasks.segmentation.transforms` (e.g.
`seg_resize((800, 288), keep_ratio=False)`, SCNN's input) then resize image
and label together; the points stay in original pixels, where the metric
compares them.
"""
import numpy as np

from vision_jax.batch import IMAGE, IMAGE_SIZE, LANE_EXIST, LANE_POINTS, ORIGINAL_SIZE
from vision_jax.data.lane_folder import LINES, NUM_SLOTS
from vision_jax.tasks.segmentation.transforms import image_label, with_label


def parse_lines(text: bytes | str, max_lanes: int, max_points: int) -> np.ndarray:
  """A .lines.txt ("x1 y1 x2 y2 ..." per lane) -> float32 [max_lanes, max_points, 2], NaN-padded."""
  if isinstance(text, bytes):
    text = text.decode()
  lanes = [line.split() for line in str(text).splitlines() if line.strip()]
  if len(lanes) > max_lanes:
    raise ValueError(f"{len(lanes)} lanes in the .lines.txt; lane_targets has max_lanes="
                     f"{max_lanes}.")
  points = np.full((max_lanes, max_points, 2), np.nan, np.float32)
  for i, fields in enumerate(lanes):
    if len(fields) % 2:
      raise ValueError(f"Lane {i} of the .lines.txt has an odd number of coordinates "
                       f"({len(fields)}).")
    if len(fields) // 2 > max_points:
      raise ValueError(f"Lane {i} has {len(fields) // 2} points; lane_targets has max_points="
                       f"{max_points}.")
    points[i, :len(fields) // 2] = np.asarray(fields, np.float32).reshape(-1, 2)
  return points


def lane_targets(max_lanes: int = NUM_SLOTS, max_points: int = 80, segmentation: bool = True):
  """The record's lane labels, lanes and existence flags (module docstring)."""
  def fn(ex, rng):
    del rng
    out = {k: v for k, v in ex.items() if k != LINES}
    exist = np.asarray(ex[LANE_EXIST], np.float32)
    if exist.shape != (NUM_SLOTS,) or not np.all((exist == 0) | (exist == 1)):
      raise ValueError(f"Existence flags {exist.tolist()}: expected {NUM_SLOTS} values of 0 or 1.")
    out[LANE_EXIST] = exist
    out[LANE_POINTS] = parse_lines(ex.get(LINES, b""), max_lanes, max_points)
    if not segmentation:
      size = np.asarray(np.asarray(ex[IMAGE]).shape[:2], np.int32)
      out.pop("segmentation", None)
      return {**out, ORIGINAL_SIZE: size, IMAGE_SIZE: size.copy()}
    if not len(ex.get("segmentation", b"")):
      raise ValueError("The record has no lane-segmentation label (lane_targets(segmentation="
                       "False) reads lists without them).")
    label = image_label(ex, "segmentation")
    if label.max(initial=0) > NUM_SLOTS:
      raise ValueError(f"Lane label {int(label.max())} > {NUM_SLOTS} slots.")
    return with_label(out, label)
  return fn
