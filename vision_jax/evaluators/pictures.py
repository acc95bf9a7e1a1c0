"""Pictures any evaluator draws: a colour per class, and grids of images
(one TensorBoard image per group) written next to its scalars."""
import colorsys
from typing import Sequence

import numpy as np


def class_colour(index: int) -> tuple[int, int, int]:
  """A saturated colour per class; consecutive classes are far apart in hue."""
  hue = (index * 0.618033988749895) % 1.0  # Golden-ratio steps cover the circle evenly.
  value = 1.0 if index % 2 == 0 else 0.8
  r, g, b = colorsys.hsv_to_rgb(hue, 0.85, value)
  return int(round(255 * r)), int(round(255 * g)), int(round(255 * b))


def tile(images: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
  """uint8 grid of `images` (HWC, any sizes) in `columns` columns, top-left aligned
  in equal cells separated by `gap` black pixels."""
  if not images:
    raise ValueError("tile() needs at least one image.")
  images = [np.asarray(im, np.uint8) for im in images]
  images = [im[..., None] if im.ndim == 2 else im for im in images]
  channels = max(im.shape[-1] for im in images)
  images = [np.repeat(im, channels, -1) if im.shape[-1] == 1 else im for im in images]
  columns = max(1, min(columns, len(images)))
  rows = -(-len(images) // columns)
  cell_h = max(im.shape[0] for im in images)
  cell_w = max(im.shape[1] for im in images)
  grid = np.zeros((rows * cell_h + (rows - 1) * gap, columns * cell_w + (columns - 1) * gap, channels),
                  np.uint8)
  for n, im in enumerate(images):
    r, c = divmod(n, columns)
    top, left = r * (cell_h + gap), c * (cell_w + gap)
    grid[top:top + im.shape[0], left:left + im.shape[1]] = im
  return grid


def tile_groups(images: dict[str, np.ndarray], columns: int = 4) -> dict[str, np.ndarray]:
  """{"group/item": image} -> {"group": grid of the group's images, in key order}."""
  groups: dict[str, list[np.ndarray]] = {}
  for key in sorted(images, key=lambda k: (k.split("/")[0], _natural(k))):
    groups.setdefault(key.split("/")[0], []).append(images[key])
  return {group: tile(items, columns) for group, items in groups.items()}


def _natural(key: str) -> list:
  return [int(t) if t.isdigit() else t for t in key.replace("/", " ").split()]
