"""Detection pictures: predicted and ground-truth boxes drawn on images (PIL).

Boxes are xyxy pixels with width = x2 - x1, so a box covers the pixel columns
[x1, x2) and rows [y1, y2); its outline is drawn on the outermost of them.
Predictions get a solid outline in their class's colour and a label
("name 0.87") on a filled tab of that colour; ground truth gets a thin dashed
black-and-white outline, readable on any background.
"""
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vision_jax.evaluators.pictures import class_colour

_DASH = 4  # Pixels per dash of a ground-truth outline.


def _pixel_box(box, height: int, width: int) -> tuple[int, int, int, int] | None:
  """xyxy floats -> inclusive pixel corners inside the image, or None if empty."""
  x1, y1, x2, y2 = (float(v) for v in box)
  left, top = max(int(round(x1)), 0), max(int(round(y1)), 0)
  right, bottom = min(int(round(x2)) - 1, width - 1), min(int(round(y2)) - 1, height - 1)
  if right < left or bottom < top:
    return None
  return left, top, right, bottom


def _dashed_rectangle(draw: ImageDraw.ImageDraw, corners: tuple[int, int, int, int]) -> None:
  left, top, right, bottom = corners
  edges = [((x, top) for x in range(left, right + 1)),
           ((right, y) for y in range(top, bottom + 1)),
           ((x, bottom) for x in range(right, left - 1, -1)),
           ((left, y) for y in range(bottom, top - 1, -1))]
  position = 0
  for edge in edges:
    for point in edge:
      draw.point(point, fill=(255, 255, 255) if (position // _DASH) % 2 == 0 else (0, 0, 0))
      position += 1


def _label(draw: ImageDraw.ImageDraw, text: str, corners, colour, font, size) -> None:
  """Text on a filled tab above the box (inside it when there is no room),
  moved left where it would leave the image."""
  height, width = size
  left, top, _, _ = corners
  x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
  tab_w, tab_h = x1 - x0 + 4, y1 - y0 + 4
  left = max(min(left, width - tab_w), 0)
  tab_top = top - tab_h if top - tab_h >= 0 else min(top, max(height - tab_h, 0))
  draw.rectangle((left, tab_top, left + tab_w - 1, tab_top + tab_h - 1), fill=colour)
  luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
  ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
  draw.text((left + 2 - x0, tab_top + 2 - y0), text, fill=ink, font=font)


def draw_detections(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
                    scores: np.ndarray, class_names: Sequence[str],
                    gt_boxes: np.ndarray | None = None, *,
                    line_width: int | None = None, labels: bool = True) -> np.ndarray:
  """Returns a uint8 RGB copy of `image` [H, W, 3] (or grey [H, W(, 1)]) with the boxes drawn.

  `boxes` [N, 4] xyxy, `classes` [N] contiguous indices (rows < 0 are skipped),
  `scores` [N]; `gt_boxes` [K, 4] xyxy are drawn first, dashed and 1 pixel
  wide. `line_width` defaults to ~1/300 of the shorter side (at least 2).
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  pil = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
  height, width = pil.height, pil.width
  if line_width is None:
    line_width = max(2, round(min(height, width) / 300))
  font = ImageFont.load_default(size=max(10, min(height, width) // 40))
  draw = ImageDraw.Draw(pil)
  for box in np.reshape(np.asarray(gt_boxes if gt_boxes is not None else []), (-1, 4)):
    corners = _pixel_box(box, height, width)
    if corners:
      _dashed_rectangle(draw, corners)
  boxes = np.reshape(np.asarray(boxes), (-1, 4))
  classes, scores = np.reshape(classes, (-1,)), np.reshape(scores, (-1,))
  drawn = [(i, _pixel_box(boxes[i], height, width)) for i in range(len(boxes)) if classes[i] >= 0]
  drawn = [(i, c) for i, c in drawn if c]
  for i, corners in drawn:  # All outlines first, so no label is covered by a later box.
    draw.rectangle(corners, outline=class_colour(int(classes[i])), width=line_width)
  if labels:
    for i, corners in sorted(drawn, key=lambda d: scores[d[0]]):  # The best label on top.
      c = int(classes[i])
      name = class_names[c] if c < len(class_names) else str(c)
      _label(draw, f"{name} {float(scores[i]):.2f}", corners, class_colour(c), font,
             (height, width))
  return np.asarray(pil)
