"""Segmentation pictures: class masks as colour overlays on the image, the
prediction beside the label."""
import io

import numpy as np
from PIL import Image

from vision_jax.data import pipeline, sources
from vision_jax.evaluators.pictures import class_colour, tile


def palette(ignore_index: int = 255) -> np.ndarray:
  """uint8 [256, 3]: a colour per class; black for `ignore_index`."""
  colours = np.array([class_colour(c) for c in range(256)], np.uint8)
  colours[ignore_index] = 0
  return colours


def overlay(image: np.ndarray, classes: np.ndarray, ignore_index: int = 255,
            alpha: float = 0.5) -> np.ndarray:
  """uint8 image with each pixel's class colour blended in at `alpha`
  (ignored pixels unchanged); `classes` is cropped to the image."""
  h, w = image.shape[:2]
  classes = np.asarray(classes)[:h, :w].astype(np.int64)
  colours = palette(ignore_index)[classes].astype(np.float32)
  blend = (1 - alpha) * image.astype(np.float32) + alpha * colours
  keep = (classes == ignore_index)[..., None]
  return np.where(keep, image, np.round(blend)).astype(np.uint8)


def side_by_side(image: np.ndarray, prediction: np.ndarray, label: np.ndarray,
                 ignore_index: int = 255) -> np.ndarray:
  """image, predicted classes, true classes, top to bottom."""
  image = np.asarray(image, np.uint8)
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, -1)
  return tile([image, overlay(image, prediction, ignore_index),
               overlay(image, label, ignore_index)], columns=1)


def original_image(data: pipeline.DataSpec, index: int) -> np.ndarray:
  """The record `index` of the split's image as stored (uint8 [H, W, 3])."""
  source = sources.open_source(data.name, data.split, data.data_dir, skip_decoding=("image",))
  value = source[index]["image"]
  if isinstance(value, (bytes, np.bytes_)):
    with Image.open(io.BytesIO(value)) as img:
      return np.asarray(img.convert("RGB"))
  return np.asarray(value, np.uint8)
