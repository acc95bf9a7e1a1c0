"""shapes_seg_demo: an embedded, generated semantic-segmentation dataset in
mmsegmentation's folder layout, read through `seg_folder.SegmentationFolder`
like any user folder.

Eight classes: 0 background, 1-6 the shapes of `shapes_demo` (circle, square,
triangle, star, ring, cross; same sizes, including 8-12 px tiny ones, random
colours far from what they cover, occlusion by later shapes), and 7 "line":
thin strokes 1-3 px wide drawn on top. The background has the same textures
and distractor arcs and strokes as `shapes_demo` (those are background, so
thin structure alone does not make a line). Every pixel is labelled; no
label is ignored. Images are a pure function of (SEED, split, index).

With the defaults: 1,000 train / 100 val images of sides in [128, 256].
"""
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from vision_jax.data import generated, shapes

CLASSES = ("background",) + shapes.CLASSES + ("line",)
LINE = len(CLASSES) - 1
SPLITS = {"train": 1000, "val": 100}
SEED = 0
VERSION = "1.0.0"
SIDE_RANGE = (128, 256)
OBJECTS_RANGE = (1, 6)
LINES_RANGE = (0, 3)
LINE_WIDTHS = (1, 3)
_SPLIT_CODES = {"train": 1, "val": 2}


def _lines(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
  """Mask of 0-3 thin polylines (1-3 px wide), each 2-4 points."""
  mask = Image.new("L", (w, h), 0)
  draw = ImageDraw.Draw(mask)
  for _ in range(int(rng.integers(LINES_RANGE[0], LINES_RANGE[1] + 1))):
    points = [tuple(p) for p in (rng.uniform(0, 1, (int(rng.integers(2, 5)), 2)) * (w, h))]
    draw.line(points, fill=255, width=int(rng.integers(LINE_WIDTHS[0], LINE_WIDTHS[1] + 1)))
  return np.asarray(mask) > 0


def render(split: str, index: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
  """Image `index` of `split`: (uint8 [H, W, 3], uint8 class map [H, W])."""
  rng = np.random.default_rng((seed, 100 + _SPLIT_CODES[split], index))
  h, w = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2))
  image = np.asarray(shapes.background(rng, h, w)).copy()
  label = np.zeros((h, w), np.uint8)
  for _ in range(int(rng.integers(OBJECTS_RANGE[0], OBJECTS_RANGE[1] + 1))):
    category = int(rng.integers(len(shapes.CLASSES)))
    r = shapes.diameter(rng, min(h, w)) / 2
    sx, sy = rng.uniform(0.8, 1.25, 2)
    reach = r * max(sx, sy) + 1
    cx, cy = rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)
    x0, y0 = int(cx - reach), int(cy - reach)
    x1, y1 = min(w, int(math.ceil(cx + reach)) + 1), min(h, int(math.ceil(cy + reach)) + 1)
    mask = shapes.shape_mask(shapes.CLASSES[category], y1 - y0, x1 - x0, cx - x0, cy - y0, r,
                             rng.uniform(0, 2 * math.pi), sx, sy)
    window = (slice(y0, y1), slice(x0, x1))
    if not mask.any():
      continue
    image[window][mask] = shapes.contrasting_colour(rng, image[window][mask], [])
    label[window][mask] = category + 1
  lines = _lines(rng, h, w)
  if lines.any():
    image[lines] = shapes.contrasting_colour(rng, image[lines], [])
    label[lines] = LINE
  noise = rng.standard_normal((h, w, 1), np.float32) * np.float32(rng.uniform(0.5, 3.5))
  image = np.clip(image + noise, 0, 255).astype(np.uint8) & shapes.COLOUR_MASK
  return image, label


def write_split(directory: str, split: str, num_images: int, seed: int = SEED) -> None:
  """Writes images/<split>/<n>.png and annotations/<split>/<n>.png."""
  for sub in ("images", "annotations"):
    os.makedirs(os.path.join(directory, sub, split), exist_ok=True)
  for index in range(num_images):
    image, label = render(split, index, seed)
    name = f"{index + 1:06d}.png"
    with open(os.path.join(directory, "images", split, name), "wb") as f:
      f.write(shapes.png_bytes(image))
    Image.fromarray(label, mode="L").save(os.path.join(directory, "annotations", split, name),
                                          compress_level=1)


class ShapesSegDemo(generated.GeneratedFolder):
  """The dataset in `<data_dir>/shapes_seg_demo/<VERSION>/`, generated on first use."""

  name = "shapes_seg_demo"
  version = VERSION
  layout = "segmentation"

  def __init__(self, data_dir: str | None = None, **unused):
    super().__init__(data_dir, **unused)
    self.splits = dict(SPLITS)

  def prepared_files(self) -> list[str]:
    last = {s: f"{n:06d}.png" for s, n in self.splits.items()}
    return [os.path.join(sub, s, last[s]) for s in self.splits for sub in ("images", "annotations")]

  def write(self, directory: str) -> None:
    for split, num_images in self.splits.items():
      write_split(directory, split, num_images)
