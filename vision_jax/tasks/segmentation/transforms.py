"""Segmentation pp ops: mmsegmentation 0.x's pipeline on (image, label map)
pairs (`mmseg/datasets/pipelines/{loading,transforms}.py`).

`seg_label` decodes the label map into "segmentation" (uint8 [H, W]) and
records "image/original_size"; a label map that cannot be decoded or whose
size differs from the image's raises, so the pipeline skips and counts the
record. The geometric ops move image and label together and keep
"image/size" (the resized image before padding) current. Images resize with
PIL's bilinear filter (mmseg uses cv2's; PIL smooths when shrinking), labels
with nearest.
"""
import io

import numpy as np
from PIL import Image

from vision_jax.batch import IMAGE, IMAGE_SIZE, ORIGINAL_SIZE, SEGMENTATION
from vision_jax.data.transforms import resize_image

IGNORE = 255


def _decode_label(value) -> np.ndarray:
  if isinstance(value, (bytes, np.bytes_)):
    try:
      with Image.open(io.BytesIO(value)) as img:
        value = np.asarray(img)
    except (OSError, SyntaxError, ValueError) as e:
      raise ValueError(f"Unreadable label map: {e}") from e
  value = np.asarray(value)
  if value.ndim == 3:
    value = value[..., 0]  # Label PNGs stored as RGB / with a channel axis: the class is R.
  if value.ndim != 2:
    raise ValueError(f"Label map of shape {value.shape}; expected [H, W].")
  return value


def seg_label(key: str = "segmentation", reduce_zero_label: bool = False,
              num_classes: int | None = None):
  """Label map `key` -> "segmentation" uint8 [H, W] and "image/original_size".

  `reduce_zero_label` (mmseg's ADE20K): 0 ("other") becomes 255 and every
  other label moves down by one. With `num_classes`, labels >= num_classes
  (other than 255) become 255 and are counted in "count/invalid_label_pixels".
  """
  def fn(ex, rng):
    label = image_label(ex, key)
    if reduce_zero_label:
      label = np.where(label == 0, IGNORE, label - 1)
      label = np.where(label == IGNORE - 1, IGNORE, label)
    out = {k: v for k, v in ex.items() if k != key}
    if num_classes is not None:
      invalid = (label >= num_classes) & (label != IGNORE)
      label = np.where(invalid, IGNORE, label)
      out["count/invalid_label_pixels"] = np.int32(invalid.sum())
    if label.max(initial=0) > IGNORE:
      raise ValueError(f"Label {int(label.max())} does not fit uint8.")
    return with_label(out, label)
  return fn


def image_label(ex: dict, key: str) -> np.ndarray:
  """The decoded label map `ex[key]` as int64 [H, W], checked against the image's size."""
  label = _decode_label(ex[key]).astype(np.int64)
  image = np.asarray(ex[IMAGE])
  if image.ndim < 2 or label.shape != image.shape[:2]:
    raise ValueError(f"Label map of size {label.shape} for an image of size {image.shape[:2]}.")
  if label.min(initial=0) < 0:
    raise ValueError(f"Negative label {int(label.min())}.")
  return label


def with_label(ex: dict, label: np.ndarray) -> dict:
  """`ex` with "segmentation" = label (uint8) and the image's size as
  "image/original_size" and "image/size"."""
  size = np.asarray(np.asarray(ex[IMAGE]).shape[:2], np.int32)
  return {**ex, SEGMENTATION: label.astype(np.uint8), ORIGINAL_SIZE: size, IMAGE_SIZE: size.copy()}


def rescale_size(h: int, w: int, scale) -> tuple[int, int]:
  """mmcv's `rescale_size`: the largest (h', w') with the aspect of (h, w)
  whose long side <= max(scale) and short side <= min(scale), rounded as
  int(x * factor + 0.5)."""
  long_edge, short_edge = max(scale), min(scale)
  factor = min(long_edge / max(h, w), short_edge / min(h, w))
  return int(h * factor + 0.5), int(w * factor + 0.5)


def seg_resize(scale=(2048, 512), ratio_range=None, keep_ratio: bool = True,
               size_divisor: int | None = None, resize_label: bool = True):
  """mmseg `Resize` (train: `ratio_range` scales `scale` by r ~ U(range)) and
  `AlignResize` (`size_divisor`: then resized again to sides rounded up to a
  multiple). `resize_label=False` keeps the label at its original size (test)."""
  if ratio_range is not None and len(ratio_range) != 2:
    raise ValueError(f"ratio_range={ratio_range!r}: expected (low, high).")

  def fn(ex, rng):
    image = ex[IMAGE]
    h, w = image.shape[:2]
    target = tuple(scale)
    if ratio_range is not None:
      ratio = rng.uniform(*ratio_range)
      target = (int(target[0] * ratio), int(target[1] * ratio))
    if keep_ratio:
      new_h, new_w = rescale_size(h, w, target)
    else:
      new_w, new_h = target  # mmcv scales are (w, h).
    if size_divisor:
      new_h = int(np.ceil(new_h / size_divisor)) * size_divisor
      new_w = int(np.ceil(new_w / size_divisor)) * size_divisor
    out = {**ex, IMAGE: resize_image(image, new_h, new_w, "bilinear"),
           IMAGE_SIZE: np.asarray((new_h, new_w), np.int32)}
    if resize_label:
      out[SEGMENTATION] = resize_image(ex[SEGMENTATION], new_h, new_w, "nearest")
    return out
  return fn


def crop_window(h: int, w: int, crop_h: int, crop_w: int,
                rng: np.random.Generator) -> tuple[int, int]:
  """mmseg `RandomCrop.get_crop_bbox`: a uniform offset in [0, max(side - crop, 0)]."""
  return (int(rng.integers(0, max(h - crop_h, 0) + 1)),
          int(rng.integers(0, max(w - crop_w, 0) + 1)))


def seg_random_crop(size, cat_max_ratio: float = 1.0, ignore_index: int = IGNORE):
  """mmseg `RandomCrop`: with `cat_max_ratio` < 1, up to 10 redraws until the
  crop holds >= 2 classes, none above that share of its labelled pixels (the
  11th draw is kept otherwise)."""
  crop_h, crop_w = (size, size) if isinstance(size, int) else tuple(size)

  def fn(ex, rng):
    image, label = ex[IMAGE], ex[SEGMENTATION]
    h, w = image.shape[:2]
    top, left = crop_window(h, w, crop_h, crop_w, rng)
    if cat_max_ratio < 1.0:
      for _ in range(10):
        classes, counts = np.unique(label[top:top + crop_h, left:left + crop_w],
                                    return_counts=True)
        counts = counts[classes != ignore_index]
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
          break
        top, left = crop_window(h, w, crop_h, crop_w, rng)
    image = image[top:top + crop_h, left:left + crop_w]
    return {**ex, IMAGE: image, SEGMENTATION: label[top:top + crop_h, left:left + crop_w],
            IMAGE_SIZE: np.asarray(image.shape[:2], np.int32)}
  return fn


def seg_flip(p: float = 0.5):
  """mmseg `RandomFlip` (horizontal) of image and label together."""
  def fn(ex, rng):
    if rng.random() >= p:
      return ex
    return {**ex, IMAGE: ex[IMAGE][:, ::-1], SEGMENTATION: ex[SEGMENTATION][:, ::-1]}
  return fn


def _convert(x: np.ndarray, alpha: float = 1.0, beta: float = 0.0) -> np.ndarray:
  return np.clip(x.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)


def photometric_distortion(brightness_delta: int = 32, contrast_range=(0.5, 1.5),
                           saturation_range=(0.5, 1.5), hue_delta: int = 18):
  """mmseg `PhotoMetricDistortion`, each step with probability 1/2: brightness
  +U(-delta, delta); contrast x U(range) before or after (1/2 each) the
  saturation x U(range) and hue +randint(-delta, delta) (of 180) steps in HSV.
  HSV comes from PIL (hue on 0-255, so the hue shift is scaled by 256/180)
  where mmseg uses cv2; the results differ by rounding."""
  def contrast(img, rng):
    return _convert(img, alpha=rng.uniform(*contrast_range)) if rng.integers(2) else img

  def fn(ex, rng):
    img = np.asarray(ex[IMAGE], np.uint8)
    if rng.integers(2):
      img = _convert(img, beta=rng.uniform(-brightness_delta, brightness_delta))
    mode = rng.integers(2)
    if mode == 1:
      img = contrast(img, rng)
    saturate, shift_hue = rng.integers(2), rng.integers(2)
    if saturate or shift_hue:
      hsv = np.asarray(Image.fromarray(img).convert("HSV")).copy()
      if saturate:
        hsv[..., 1] = _convert(hsv[..., 1], alpha=rng.uniform(*saturation_range))
      if shift_hue:
        shift = rng.integers(-hue_delta, hue_delta) * 256 / 180
        hsv[..., 0] = np.round(hsv[..., 0].astype(np.float32) + shift).astype(np.int64) % 256
      img = np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"))
    if mode == 0:
      img = contrast(img, rng)
    return {**ex, IMAGE: img}
  return fn


def seg_pad(size, label_size=None, pad_val: float = 0.0, seg_pad_val: int = IGNORE):
  """mmseg `Pad`: image to `size` with `pad_val` and label to `label_size`
  (default `size`) with `seg_pad_val`, at the bottom and right. An image or
  label larger than its canvas raises (the record is skipped and counted)."""
  size = (size, size) if isinstance(size, int) else tuple(size)
  label_size = size if label_size is None else (
      (label_size, label_size) if isinstance(label_size, int) else tuple(label_size))

  def pad(x, to, value, what):
    h, w = x.shape[:2]
    if h > to[0] or w > to[1]:
      raise ValueError(f"{what} of size {(h, w)} exceeds its canvas {to}.")
    widths = ((0, to[0] - h), (0, to[1] - w)) + ((0, 0),) * (x.ndim - 2)
    return np.pad(x, widths, constant_values=value)

  def fn(ex, rng):
    return {**ex, IMAGE: pad(np.asarray(ex[IMAGE]), size, pad_val, "Image"),
            SEGMENTATION: pad(np.asarray(ex[SEGMENTATION]), label_size, seg_pad_val, "Label map")}
  return fn
