"""Detection preprocessing ops: mmdetection 2.x's training/test pipeline in numpy.

Same style as `transforms.py`: each factory returns `fn(example, rng)`. A
typical chain (RetinaNet, mmdet 2.13 `retinanet_r50_fpn_1x_coco.py`):

  decode(channels=3)|coco_objects|resize_keep_ratio(800, 1333)|flip_lr_boxes
  |normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))|pad_to(1344, 1344)
  |pad_boxes(100)

Boxes are float32 (x1, y1, x2, y2) in pixels, width = x2 - x1 (mmdet 2.x, no
+1). Counters `count/<name>` are int32 scalars the trainer sums as `data/<name>`.
Flip before padding: the flip mirrors about the current image width. Unlike
mmdet's per-batch padding to a multiple of 32, `pad_to` pads every image to one
fixed canvas, so batches have static shapes; `pad_to_canvas` pads it to its
aspect-ratio group's canvas (config.data.canvases, `data/grouping.py`), so
there is one static shape per group.
"""
import numpy as np

from vision_jax.batch import BOXES, CANVAS, CLASSES, IMAGE, IMAGE_ID
from vision_jax.data.transforms import Op, check_method, resize_image

DROPPED, TRUNCATED = "count/dropped_boxes", "count/truncated_boxes"


def _image_id(ex: dict) -> dict:
  """Casts "image/id" (if any) to an int32 scalar, refusing ids that overflow."""
  if "image/id" not in ex:
    return ex
  value = int(np.asarray(ex[IMAGE_ID]))
  if not -2**31 <= value < 2**31:
    raise ValueError(f"image/id {value} does not fit in int32")
  return {**ex, "image/id": np.int32(value)}


def _hw(ex: dict) -> tuple[int, int]:
  image = ex[IMAGE]
  if isinstance(image, (bytes, np.bytes_)) or np.ndim(image) < 2:
    raise ValueError("detection ops need a decoded image: put `decode` first")
  return int(image.shape[0]), int(image.shape[1])


def coco_objects(drop_crowd: bool = True, min_size: float = 1.0) -> Op:
  """COCO "objects" -> "boxes" float32 [N, 4] xyxy pixels and "classes" int32 [N].

  After mmdet's `CocoDataset._parse_ann_info`: boxes are clipped to the image,
  then dropped (and counted in `count/dropped_boxes`) when non-finite, of an
  unknown class (label < 0), or narrower or shorter than `min_size` (which
  includes boxes of negative size and boxes outside the image). mmdet tests
  w, h >= 1 before clipping and clips later (in `Resize`), so a box mostly
  outside the image may survive there and not here. Crowd boxes
  are removed when `drop_crowd` (mmdet's `gt_bboxes_ignore`, unused by
  RetinaNet) without being counted; otherwise they are kept as plain boxes.
  Removes "objects" and "image/filename" (a string, not a batchable feature).
  """
  def fn(ex, rng):
    h, w = _hw(ex)
    objects = ex["objects"]
    bbox = np.asarray(objects["bbox"], np.float64).reshape(-1, 4)
    labels = np.asarray(objects["label"], np.int64).reshape(-1)
    crowd = np.asarray(objects.get("is_crowd", np.zeros(len(bbox), bool)), bool).reshape(-1)
    if not len(bbox) == len(labels) == len(crowd):
      raise ValueError(f"objects have {len(bbox)} boxes, {len(labels)} labels, {len(crowd)} crowd flags")
    ymin, xmin, ymax, xmax = bbox.T
    boxes = np.stack([xmin * w, ymin * h, xmax * w, ymax * h], -1)
    with np.errstate(invalid="ignore"):
      boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float64))
      size_ok = ((boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
                 & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))
    valid = np.isfinite(boxes).all(-1) & size_ok & (labels >= 0)
    considered = ~crowd if drop_crowd else np.ones_like(crowd)
    keep = valid & considered
    out = {k: v for k, v in ex.items() if k not in ("objects", "image/filename")}
    out[BOXES] = boxes[keep].astype(np.float32).reshape(-1, 4)
    out[CLASSES] = labels[keep].astype(np.int32)
    out[DROPPED] = np.int32(int(ex.get(DROPPED, 0)) + int((considered & ~valid).sum()))
    return _image_id(out)
  return fn


def keep_ratio_size(h: int, w: int, short: float, long: float) -> tuple[int, int]:
  """mmcv `rescale_size`: the largest scale with short side <= `short` and
  long side <= `long`; new sides rounded half up."""
  scale = min(long / max(h, w), short / min(h, w))
  return int(h * scale + 0.5), int(w * scale + 0.5)


def resize_keep_ratio(short: int = 800, long: int = 1333, method: str = "bilinear") -> Op:
  """mmdet `Resize(img_scale=(long, short), keep_ratio=True)`.

  The image (H, W) becomes (int(H s + 0.5), int(W s + 0.5)) with
  s = min(long / max(H, W), short / min(H, W)); boxes scale by the realised
  (new_w / W, new_h / H) and are clipped to the new image. Writes
  "image/scale" = (new_h / H, new_w / W) and "image/size" = (new_h, new_w).
  PIL's filters anti-alias when shrinking, unlike mmcv's cv2 default.
  """
  check_method(method)
  def fn(ex, rng):
    h, w = _hw(ex)
    nh, nw = keep_ratio_size(h, w, short, long)
    out = {**ex, "image": resize_image(np.asarray(ex[IMAGE]), nh, nw, method),
           "image/scale": np.array([nh / h, nw / w], np.float32),
           "image/size": np.array([nh, nw], np.int32)}
    if "boxes" in ex:
      boxes = np.asarray(ex[BOXES], np.float64) * np.array([nw / w, nh / h] * 2)
      out[BOXES] = np.clip(boxes, 0, np.array([nw, nh, nw, nh])).astype(np.float32)
    return out
  return fn


def flip_lr_boxes(p: float = 0.5) -> Op:
  """With probability p mirrors the image and its boxes: x1' = W - x2, x2' = W - x1
  (W the current image width; rows with class -1 are padding and stay)."""
  def fn(ex, rng):
    if rng.random() >= p:
      return ex
    h, w = _hw(ex)
    out = {**ex, "image": np.ascontiguousarray(np.asarray(ex[IMAGE])[:, ::-1])}
    if "boxes" in ex:
      boxes = np.array(ex[BOXES], np.float32).reshape(-1, 4)
      real = (np.asarray(ex[CLASSES]) >= 0 if "classes" in ex
              else np.ones(len(boxes), bool))
      flipped = boxes.copy()
      flipped[:, 0], flipped[:, 2] = w - boxes[:, 2], w - boxes[:, 0]
      out[BOXES] = np.where(real[:, None], flipped, boxes)
    return out
  return fn


def _padded(ex: dict, height: int, width: int, op: str) -> dict:
  h, w = _hw(ex)
  if h > height or w > width:
    raise ValueError(f"{op}: the image is {h}x{w}, larger than the {height}x{width} canvas")
  image = np.asarray(ex[IMAGE])
  canvas = np.zeros((height, width) + image.shape[2:], image.dtype)
  canvas[:h, :w] = image
  return {**ex, "image": canvas}


def pad_to(height: int, width: int) -> Op:
  """Zero-pads the image (any dtype) bottom/right to (height, width); an image
  larger than the canvas is an error (the pipeline skips and counts it)."""
  def fn(ex, rng):
    return _padded(ex, height, width, f"pad_to({height}, {width})")
  return fn


def pad_to_canvas() -> Op:
  """Zero-pads the image bottom/right to the canvas of its aspect-ratio group,
  which the pipeline gives as the feature "canvas" (and removes here); larger
  than that canvas is an error (skipped and counted)."""
  def fn(ex, rng):
    if CANVAS not in ex:
      raise ValueError("pad_to_canvas needs aspect-ratio groups: set config.data.canvases")
    height, width = (int(v) for v in np.asarray(ex[CANVAS]).reshape(2))
    out = _padded(ex, height, width, "pad_to_canvas")
    del out[CANVAS]
    return out
  return fn


def pad_boxes(max_boxes: int = 100) -> Op:
  """Pads "boxes" to [max_boxes, 4] (rows of 0) and "classes" to [max_boxes]
  (-1); boxes beyond max_boxes are dropped and counted in
  `count/truncated_boxes`. Also makes sure `count/dropped_boxes` exists, so
  every example has the same features."""
  def fn(ex, rng):
    boxes = np.asarray(ex.get("boxes", np.zeros((0, 4))), np.float32).reshape(-1, 4)
    classes = np.asarray(ex.get("classes", np.zeros((0,))), np.int32).reshape(-1)
    if len(boxes) != len(classes):
      raise ValueError(f"{len(boxes)} boxes but {len(classes)} classes")
    n = min(len(boxes), max_boxes)
    out = {**ex, "boxes": np.zeros((max_boxes, 4), np.float32),
           "classes": np.full((max_boxes,), -1, np.int32),
           DROPPED: np.int32(ex.get(DROPPED, 0)),
           TRUNCATED: np.int32(int(ex.get(TRUNCATED, 0)) + len(boxes) - n)}
    out[BOXES][:n], out[CLASSES][:n] = boxes[:n], classes[:n]
    return _image_id(out)
  return fn
