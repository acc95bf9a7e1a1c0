"""lanes_demo: an embedded, generated lane-detection dataset in CULane's
layout (`data.lane_folder`), read through the same path as CULane itself.

Each 400 x 144 image (CULane's 1640 x 590 at about 1/4) is a road under a
sky: asphalt of random shade and texture with shadow patches, a vanishing
point near the horizon, and up to four lane markings in CULane's fixed
slots (1, 2 left of the car, 3, 4 right of it; the ego lanes 2 and 3 are
there 95% of the time, the outer ones 60%), drawn solid or dashed, white or
yellow, widening with perspective along a common road curvature. The files:
- `<split>/<n>.jpg` and `<split>/<n>.lines.txt`: each lane's points every
  `POINT_STEP` rows, bottom first, in image pixels (CULane's format);
- `laneseg_label_w5/<split>/<n>.png`: lane k drawn `LABEL_WIDTH` px wide
  with value k (CULane's laneseg_label_w16 at this scale);
- `list/<split>_gt.txt`: "image label e1 e2 e3 e4" per image.
Images are a pure function of (SEED, split, index). With the defaults:
1,000 train / 100 val images.
"""
import os

import numpy as np
from PIL import Image, ImageDraw

from vision_jax.data import generated

SIZE = (144, 400)  # (height, width).
SPLITS = {"train": 1000, "val": 100}
SEED = 0
VERSION = "1.0.0"
POINT_STEP = 4  # Rows between annotated points.
LABEL_WIDTH = 5  # Lane width in the segmentation label.
EXIST_PROBABILITY = (0.6, 0.95, 0.95, 0.6)  # Per slot, left to right.
LABEL_DIR = "laneseg_label_w5"
_SPLIT_CODES = {"train": 1, "val": 2}


def _road(rng: np.random.Generator, h: int, w: int, horizon: int) -> np.ndarray:
  """Sky above `horizon`, textured asphalt with shadow patches below: float32 [h, w, 3]."""
  sky = rng.uniform(120, 230, 3) * np.linspace(1.0, 0.8, horizon)[:, None, None]
  asphalt = rng.uniform(50, 130) + rng.uniform(-8, 8, 3)
  cells = rng.standard_normal((8, 24)).astype(np.float32)
  texture = np.asarray(Image.fromarray(cells).resize((w, h - horizon), Image.BICUBIC))
  road = asphalt + rng.uniform(4, 14) * texture[..., None]
  image = np.concatenate([np.broadcast_to(sky, (horizon, w, 3)), road], 0).astype(np.float32)
  shade = Image.new("L", (w, h), 0)
  draw = ImageDraw.Draw(shade)
  for _ in range(int(rng.integers(0, 4))):
    x, y = rng.uniform(0, w), rng.uniform(horizon, h)
    rx, ry = rng.uniform(10, 80), rng.uniform(4, 25)
    draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=int(rng.uniform(60, 160)))
  return image * (1.0 - np.asarray(shade, np.float32)[..., None] / 255.0 * 0.7)


def render(split: str, index: int, seed: int = SEED):
  """Image `index` of `split`: (uint8 [H, W, 3], uint8 label [H, W], exist [4],
  lanes: list of float32 [P, 2] (x, y) arrays in slot order)."""
  rng = np.random.default_rng((seed, 200 + _SPLIT_CODES[split], index))
  h, w = SIZE
  horizon = int(rng.uniform(0.3, 0.45) * h)
  vx = rng.uniform(0.4, 0.6) * w
  lane_width = rng.uniform(0.45, 0.65) * w
  centre = w / 2 + rng.uniform(-0.12, 0.12) * w
  bottoms = centre + lane_width * np.array([-1.5, -0.5, 0.5, 1.5])
  curve = rng.uniform(-0.25, 0.25) * w
  image = _road(rng, h, w, horizon)
  label = Image.new("L", (w, h), 0)
  label_draw = ImageDraw.Draw(label)
  marks = Image.new("L", (w, h), 0)
  marks_draw = ImageDraw.Draw(marks)
  colours = {}
  exist = np.zeros(4, np.float32)
  lanes = []
  for slot in range(4):
    if rng.random() >= EXIST_PROBABILITY[slot]:
      continue
    top = horizon + rng.uniform(0.05, 0.25) * (h - horizon)
    ys = np.arange(h - 1, top, -POINT_STEP, dtype=np.float64)
    t = (ys - horizon) / (h - horizon)  # 0 at the horizon, 1 at the bottom.
    xs = vx + (bottoms[slot] - vx) * t + curve * (1 - t) ** 2 * t
    inside = (xs >= 0) & (xs < w)
    if inside.sum() < 2:
      continue
    xs, ys, t = xs[inside], ys[inside], t[inside]
    exist[slot] = 1.0
    lanes.append(np.stack([xs, ys], -1).astype(np.float32))
    points = list(zip(xs.tolist(), ys.tolist()))
    label_draw.line(points, fill=slot + 1, width=LABEL_WIDTH, joint="curve")
    dashed = rng.random() < 0.5
    period = rng.uniform(0.12, 0.2)
    value = 255 - 40 * len(colours)
    colours[value] = (rng.uniform(200, 255, 3) if rng.random() < 0.7
                      else np.array([rng.uniform(200, 255), rng.uniform(170, 220), 40.0]))
    for i in range(len(points) - 1):
      if dashed and (t[i] / period) % 1.0 > 0.55:
        continue
      width = max(1, int(round(1 + 5 * t[i])))
      marks_draw.line([points[i], points[i + 1]], fill=value, width=width)
  marks = np.asarray(marks)
  for value, colour in colours.items():
    image[marks == value] = colour
  image += rng.standard_normal((h, w, 1)).astype(np.float32) * rng.uniform(2, 8)
  return np.clip(image, 0, 255).astype(np.uint8), np.asarray(label), exist, lanes


def lines_text(lanes) -> str:
  return "".join(" ".join(f"{x:.3f} {y:.0f}" for x, y in lane) + " \n" for lane in lanes)


def write_split(directory: str, split: str, num_images: int, seed: int = SEED) -> None:
  """Writes the split's images, .lines.txt files, labels and list/<split>_gt.txt."""
  for sub in (split, os.path.join(LABEL_DIR, split), "list"):
    os.makedirs(os.path.join(directory, sub), exist_ok=True)
  rows = []
  for index in range(num_images):
    image, label, exist, lanes = render(split, index, seed)
    name = f"{index + 1:06d}"
    Image.fromarray(image).save(os.path.join(directory, split, name + ".jpg"), quality=92)
    with open(os.path.join(directory, split, name + ".lines.txt"), "w") as f:
      f.write(lines_text(lanes))
    Image.fromarray(label, mode="L").save(os.path.join(directory, LABEL_DIR, split, name + ".png"))
    flags = " ".join(str(int(e)) for e in exist)
    rows.append(f"/{split}/{name}.jpg /{LABEL_DIR}/{split}/{name}.png {flags}\n")
  with open(os.path.join(directory, "list", f"{split}_gt.txt"), "w") as f:
    f.writelines(rows)


class LanesDemo(generated.GeneratedFolder):
  """The dataset in `<data_dir>/lanes_demo/<VERSION>/`, generated on first use;
  splits "train_gt" and "val_gt" as CULane's lists."""

  name = "lanes_demo"
  version = VERSION
  layout = "lanes"

  def __init__(self, data_dir: str | None = None, **unused):
    super().__init__(data_dir, **unused)
    self.splits = dict(SPLITS)

  def prepared_files(self) -> list[str]:
    return [os.path.join("list", f"{s}_gt.txt") for s in self.splits]

  def write(self, directory: str) -> None:
    for split, num_images in self.splits.items():
      write_split(directory, split, num_images)
