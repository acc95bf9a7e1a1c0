"""shapes_demo: an embedded, generated detection dataset in COCO layout.

Six shape classes (circle, square, triangle, star, ring, cross) drawn in random
colours, sizes, rotations and mild stretches on textured, noisy backgrounds with
distractor strokes. Image sides vary in [160, 320] (rarely square), so the
keep-ratio resize is exercised. Objects range from tiny (8-12 px across, 15%
of those drawn) to large (up to 60% of the short side); later objects occlude
earlier ones. Boxes and areas are those of the visible pixels (COCO's
convention), and an object more than 70% hidden is not annotated. Every image
is a pure function of (SEED, split, index), made with numpy and PIL only: the
pixels are the same everywhere, and the files the same bytes wherever Pillow's
PNG encoder (zlib) is the same.

With the defaults: 2,000 train / 200 val images, ~4.3 objects per image (1-8),
train classes within 5% of uniform; of the annotations ~9% have a longer box side
<= 12 px and ~16% >= 96 px; by COCO's area ranges 56% small, 42% medium, 2%
large; ~20% are partly (> 5%) occluded. Writing it takes ~20 s on one core
and ~130 MB (PNG, 6-bit colour).

The dataset is written once to `<data_dir>/shapes_demo/<VERSION>/` as
`annotations/instances_<split>.json` plus `<split>/<id>.png` (splits "train",
"val") and then read like any COCO-layout folder (`coco.CocoFolder`).
"""
import io
import json
import math
import os

import numpy as np
from PIL import Image, ImageDraw

from vision_jax.data import generated

CLASSES = ("circle", "square", "triangle", "star", "ring", "cross")
SPLITS = {"train": 2000, "val": 200}  # Images per split.
SEED = 0
VERSION = "1.0.0"
SIDE_RANGE = (160, 320)  # Image height and width, each drawn uniformly.
OBJECTS_RANGE = (1, 8)  # Objects drawn per image (some may be hidden and dropped).
# (probability, smallest, largest) nominal object diameter in pixels; "large"
# is capped at LARGE_FRACTION of the image's short side.
SIZE_BUCKETS = ((0.15, 8, 12), (0.30, 12, 32), (0.40, 32, 96), (0.15, 96, None))
LARGE_FRACTION = 0.6
MAX_HIDDEN = 0.7  # Objects with more of their pixels occluded are not annotated.
MIN_CONTRAST = 150  # Least L1 RGB distance of an object's colour to what it covers.
COLOUR_MASK = 0xFC  # 6-bit colour depth: the noisy PNGs shrink by about a third.
_SPLIT_CODES = {"train": 1, "val": 2}


def background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
  """A two-colour gradient with low-frequency texture and distractor strokes."""
  c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
  angle = rng.uniform(0, 2 * math.pi)
  t = (np.arange(w, dtype=np.float32) * math.cos(angle))[None, :] + \
      (np.arange(h, dtype=np.float32) * math.sin(angle))[:, None]
  t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
  img = c0.astype(np.float32) + (c1 - c0).astype(np.float32) * t[..., None]
  cells = int(rng.integers(6, 20))
  texture = np.clip(128 + 40 * rng.standard_normal((cells, cells, 3)), 0, 255).astype(np.uint8)
  texture = np.asarray(Image.fromarray(texture).resize((w, h), Image.BICUBIC), np.float32)
  img += (texture - 128) * np.float32(rng.uniform(10, 35) / 40)
  img = np.clip(img, 0, 255, out=img).astype(np.uint8)
  canvas = Image.fromarray(img)
  draw = ImageDraw.Draw(canvas)
  for _ in range(int(rng.integers(3, 13))):
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    width = int(rng.integers(1, 4))
    if rng.random() < 0.6:
      points = [tuple(p) for p in (rng.uniform(0, 1, (int(rng.integers(2, 5)), 2)) * (w, h))]
      draw.line(points, fill=colour, width=width)
    else:
      cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, 0.5 * min(h, w))
      start = rng.uniform(0, 360)
      draw.arc((cx - r, cy - r, cx + r, cy + r), start, start + rng.uniform(40, 200),
               fill=colour, width=width)
  return canvas


def _polygon(kind: str, cx: float, cy: float, r: float, rot: float, sx: float,
             sy: float) -> list[tuple[float, float]]:
  """Vertices of a shape inscribed in radius r, rotated by rot, then stretched."""
  if kind == "square":
    angles, radii = rot + math.pi / 4 + np.arange(4) * math.pi / 2, np.full(4, r)
  elif kind == "triangle":
    angles, radii = rot + np.arange(3) * 2 * math.pi / 3, np.full(3, r)
  elif kind == "star":
    angles, radii = rot + np.arange(10) * math.pi / 5, np.tile([r, 0.45 * r], 5)
  else:  # cross: a plus sign with arms 0.36 r wide.
    a = 0.18 * r
    pts = np.array([(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r), (-a, -r), (-a, -a),
                    (-r, -a), (-r, a), (-a, a), (-a, r)])
    angles = rot + np.arctan2(pts[:, 1], pts[:, 0])
    radii = np.hypot(pts[:, 0], pts[:, 1])
  return [(cx + sx * q * math.cos(t), cy + sy * q * math.sin(t)) for q, t in zip(radii, angles)]


def shape_mask(kind: str, h: int, w: int, cx: float, cy: float, r: float, rot: float,
                sx: float, sy: float) -> np.ndarray:
  mask = Image.new("L", (w, h), 0)
  draw = ImageDraw.Draw(mask)
  box = (cx - sx * r, cy - sy * r, cx + sx * r, cy + sy * r)
  if kind in ("circle", "ring"):
    draw.ellipse(box, fill=255)
    if kind == "ring":
      k = 0.5 + 0.15 * (rot / (2 * math.pi))  # Hole radius 0.5-0.65 r, varied by rot.
      draw.ellipse((cx - k * sx * r, cy - k * sy * r, cx + k * sx * r, cy + k * sy * r), fill=0)
  else:
    draw.polygon(_polygon(kind, cx, cy, r, rot, sx, sy), fill=255)
  return np.asarray(mask) > 0


def diameter(rng: np.random.Generator, short_side: int) -> float:
  probs = [b[0] for b in SIZE_BUCKETS]
  _, lo, hi = SIZE_BUCKETS[int(rng.choice(len(SIZE_BUCKETS), p=probs))]
  cap = LARGE_FRACTION * short_side
  hi = cap if hi is None else min(hi, cap)
  return float(rng.uniform(min(lo, hi), hi))


def contrasting_colour(rng: np.random.Generator, covered: np.ndarray, others: list) -> np.ndarray:
  """A random colour far (L1 >= MIN_CONTRAST) from the mean of what it covers
  and from the colours of the objects it overlaps."""
  references = [covered.reshape(-1, 3).mean(0)] + others
  for _ in range(64):
    colour = rng.integers(0, 256, 3)
    if all(np.abs(colour - ref).sum() >= MIN_CONTRAST for ref in references):
      return colour
  return np.where(references[0] > 127, 0, 255)


def render(split: str, index: int, seed: int = SEED) -> tuple[np.ndarray, list[dict]]:
  """Image `index` of `split`: (uint8 [H, W, 3], objects as dicts with
  "category" (index into CLASSES), "bbox" [x, y, w, h] of the visible pixels,
  "area" (visible pixels) and "hidden" (occluded fraction))."""
  rng = np.random.default_rng((seed, _SPLIT_CODES[split], index))
  h, w = (int(v) for v in rng.integers(SIDE_RANGE[0], SIDE_RANGE[1] + 1, 2))
  image = np.asarray(background(rng, h, w)).copy()
  owner = np.full((h, w), -1, np.int32)
  drawn = []  # (category, window, full area, colour) in drawing order.
  for _ in range(int(rng.integers(OBJECTS_RANGE[0], OBJECTS_RANGE[1] + 1))):
    category = int(rng.integers(len(CLASSES)))
    r = diameter(rng, min(h, w)) / 2
    sx, sy = rng.uniform(0.8, 1.25, 2)
    reach = r * max(sx, sy) + 1
    cx, cy = rng.uniform(reach, w - reach), rng.uniform(reach, h - reach)
    x0, y0 = int(cx - reach), int(cy - reach)
    x1, y1 = min(w, int(math.ceil(cx + reach)) + 1), min(h, int(math.ceil(cy + reach)) + 1)
    mask = shape_mask(CLASSES[category], y1 - y0, x1 - x0, cx - x0, cy - y0, r,
                       rng.uniform(0, 2 * math.pi), sx, sy)
    if not mask.any():
      continue
    window = (slice(y0, y1), slice(x0, x1))
    below = np.unique(owner[window][mask])
    colour = contrasting_colour(rng, image[window][mask], [drawn[k][3] for k in below if k >= 0])
    image[window][mask] = colour
    owner[window][mask] = len(drawn)
    drawn.append((category, window, int(mask.sum()), colour))
  noise = rng.standard_normal((h, w, 1), np.float32) * np.float32(rng.uniform(0.5, 3.5))
  image = np.clip(image + noise, 0, 255).astype(np.uint8) & COLOUR_MASK
  objects = []
  for k, (category, window, area, _) in enumerate(drawn):
    ys, xs = np.nonzero(owner[window] == k)
    hidden = 1.0 - len(ys) / max(area, 1)
    if hidden > MAX_HIDDEN:
      continue
    x0, y0 = int(xs.min()) + window[1].start, int(ys.min()) + window[0].start
    x1, y1 = int(xs.max()) + window[1].start + 1, int(ys.max()) + window[0].start + 1
    objects.append({"category": category, "area": int(len(ys)), "hidden": round(hidden, 4),
                    "bbox": [x0, y0, x1 - x0, y1 - y0]})
  return image, objects


def png_bytes(image: np.ndarray) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def write_split(directory: str, split: str, num_images: int, seed: int = SEED) -> dict:
  """Writes `<directory>/<split>/*.png`; returns the split's COCO instances dict."""
  os.makedirs(os.path.join(directory, split), exist_ok=True)
  images, annotations = [], []
  for index in range(num_images):
    image, objects = render(split, index, seed)
    entry = {"id": index + 1, "file_name": f"{index + 1:06d}.png",
             "height": int(image.shape[0]), "width": int(image.shape[1])}
    with open(os.path.join(directory, split, entry["file_name"]), "wb") as f:
      f.write(png_bytes(image))
    images.append(entry)
    for obj in objects:
      annotations.append({"id": len(annotations) + 1, "image_id": entry["id"],
                          "category_id": obj["category"] + 1, "bbox": obj["bbox"],
                          "area": obj["area"], "iscrowd": 0, "hidden": obj["hidden"]})
  return {"info": {"description": "shapes_demo: generated shapes (vision_jax)",
                   "version": VERSION, "seed": seed},
          "licenses": [], "images": images, "annotations": annotations,
          "categories": [{"id": i + 1, "name": name, "supercategory": "shape"}
                         for i, name in enumerate(CLASSES)]}


def write_dataset(directory: str, splits: dict[str, int] | None = None, seed: int = SEED) -> None:
  """Writes the whole dataset (COCO layout) into `directory` (created)."""
  for split, num_images in (splits or SPLITS).items():
    instances = write_split(directory, split, num_images, seed)
    os.makedirs(os.path.join(directory, "annotations"), exist_ok=True)
    with open(os.path.join(directory, "annotations", f"instances_{split}.json"), "w") as f:
      json.dump(instances, f)


class ShapesDemo(generated.GeneratedFolder):
  """The dataset in `<data_dir>/shapes_demo/<VERSION>/`, generated on first use
  (`generated.GeneratedFolder`)."""

  name = "shapes_demo"
  version = VERSION
  layout = "coco"

  def __init__(self, data_dir: str | None = None, **unused):
    super().__init__(data_dir, **unused)
    self.splits = dict(SPLITS)

  def prepared_files(self) -> list[str]:
    return [os.path.join("annotations", f"instances_{s}.json") for s in self.splits]

  def write(self, directory: str) -> None:
    write_dataset(directory, self.splits)
