"""COCO-format detection data: folder sources and COCO ground truth.

A COCO-layout folder holds `annotations/instances_<split>.json` and the images
under `<split>/<file_name>` (as COCO 2017 ships: split "val2017" etc.).
`CocoFolder` serves its images as records in the TFDS `coco/2017` layout
(Lin et al., 2014, "Microsoft COCO"; TFDS `object_detection/coco.py`):

  {"image": encoded bytes (or uint8 [H, W, 3] when decoding), "image/id": int64,
   "image/filename": bytes,
   "objects": {"bbox": float32 [N, 4] (ymin, xmin, ymax, xmax) / image size,
               "label": int64 [N] contiguous, "is_crowd": bool [N],
               "area": float32 [N], "id": int64 [N]}}

Category ids map to contiguous labels in sorted-id order, as TFDS does for
COCO's 80 of 91 ids. Images are ordered by id and all are kept (for eval);
`drop_empty=True` keeps only images with an annotation of a known category
(mmdet's `filter_empty_gt` for training). Malformed annotations never fail a
load: a bbox that is not four numbers becomes NaN, an unknown category gets
label -1, and boxes outside the image or of negative size stay as they are;
the `coco_objects` op drops all of these and counts them in
`count/dropped_boxes`. Annotations of unknown images are ignored. What was
found is logged and kept in `CocoFolder.report`. (TFDS stores area as int64;
folders keep the json's float area.)

`folder_ground_truth` gives a folder split's instances json as is,
`records_ground_truth` one rebuilt from records in the TFDS layout (pixel
xywh boxes, original category ids); `ground_truth.load` picks between them.
"""
import functools
import io
import json
import os
import re

import numpy as np
from absl import logging
from PIL import Image

from vision_jax.errors import DataMissingError

# COCO's 80 detection category ids (of 1..90) and names, in contiguous-label order.
COCO_CATEGORY_IDS = tuple(i for i in range(1, 91)
                          if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))
COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush")
_BATCH = 256  # Records read per call when rebuilding ground truth.


class AnnotationFormatError(ValueError):
  """An annotation file that cannot be parsed; the message names the file and position."""


def annotation_path(root: str, split: str) -> str:
  return os.path.join(root, "annotations", f"instances_{split}.json")


def split_slice(split: str) -> tuple[str, slice]:
  """"val2017[10:20]" -> ("val2017", slice(10, 20)); bounds may be "%" of the split."""
  match = re.fullmatch(r"([^\[\]]+)(?:\[(-?\d*%?):(-?\d*%?)\])?", split.strip())
  if not match:
    raise ValueError(f"Bad split {split!r}: expected NAME or NAME[start:stop].")
  return match.group(1), slice(match.group(2) or None, match.group(3) or None)


def _bound(value: str | None, n: int) -> int | None:
  if value is None:
    return None
  return round(float(value[:-1]) * n / 100) if value.endswith("%") else int(value)


def resolve_slice(portion: slice, n: int) -> slice:
  """`split_slice`'s portion (bounds may be "%") as a slice of n records."""
  return slice(_bound(portion.start, n), _bound(portion.stop, n))


def select_images(instances: dict, portion: slice, drop_empty: bool = False) -> list[dict]:
  """The split's image entries in id order, optionally only annotated ones, sliced."""
  images = sorted(instances.get("images", []), key=lambda im: im["id"])
  if drop_empty:
    known = {c["id"] for c in instances.get("categories", [])}
    annotated = {a.get("image_id") for a in instances.get("annotations", [])
                 if a.get("category_id") in known}
    images = [im for im in images if im["id"] in annotated]
  return images[resolve_slice(portion, len(images))]


def read_instances(root: str, split: str) -> dict:
  path = annotation_path(root, split)
  if not os.path.isfile(path):
    raise DataMissingError(
        f"COCO-format folder {root!r} has no split {split!r}: expected the annotations at "
        f"{path} and the images under {os.path.join(root, split)}/.")
  with open(path, "rb") as f:
    text = f.read()
  try:
    return json.loads(text)
  except json.JSONDecodeError as e:
    raise AnnotationFormatError(
        f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno} (byte {e.pos} "
        f"of {len(text)}). Re-download or regenerate the annotation file.") from None


def _array(values: list, dtype, width: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(values as an array [N] or [N, width], which rows were malformed (NaN/0))."""
  shape = (len(values), width) if width else (len(values),)
  try:
    out = np.asarray(values, dtype)
    if out.shape == shape:
      return out, np.zeros(len(values), bool)
  except (TypeError, ValueError):
    pass
  out, bad = np.zeros(shape, dtype), np.zeros(len(values), bool)
  for k, value in enumerate(values):
    try:
      out[k] = np.asarray(value, dtype).reshape(shape[1:])
    except (TypeError, ValueError):
      out[k], bad[k] = np.nan if np.issubdtype(dtype, np.floating) else 0, True
  return out, bad


class CocoFolder:
  """Random-access records of one split of a COCO-layout folder; picklable.

  The json is parsed once here into flat arrays (cheap to pickle into Grain
  workers); images are read at access, so a missing or unreadable image
  raises inside `__getitem__` (the pipeline skips and counts it).
  """

  def __init__(self, root: str, split: str, *, decode_image: bool = False,
               drop_empty: bool = False):
    self.root, self.split = root, split
    base, portion = split_slice(split)
    self.image_dir = os.path.join(root, base)
    self.decode_image = decode_image
    instances = read_instances(root, base)
    categories = sorted(instances.get("categories", []), key=lambda c: c["id"])
    self.category_ids = [int(c["id"]) for c in categories]
    self.class_names = [str(c.get("name", c["id"])) for c in categories]
    label_of = {cid: k for k, cid in enumerate(self.category_ids)}
    images = select_images(instances, portion, drop_empty)
    self.empty_dropped = len(select_images(instances, portion)) - len(images)
    row_of = {im["id"]: k for k, im in enumerate(images)}
    all_ids = {im["id"] for im in instances.get("images", [])}
    rows, anns, orphans = [], [], 0
    for ann in instances.get("annotations", []):
      row = row_of.get(ann.get("image_id"))
      if row is not None:
        rows.append(row)
        anns.append(ann)
      else:
        orphans += ann.get("image_id") not in all_ids
    order = np.argsort(np.asarray(rows, np.int64), kind="stable")  # Grouped by image, json order.
    anns, rows = [anns[k] for k in order], np.asarray(rows, np.int64)[order]
    self.image_ids = np.array([im["id"] for im in images], np.int64)
    self.file_names = [str(im["file_name"]) for im in images]
    self.offsets = np.searchsorted(rows, np.arange(len(images) + 1)).astype(np.int64)
    sizes, _ = _array([[im.get("width"), im.get("height")] for im in images], np.float64, 2)
    self._sizes_hw = sizes[:, ::-1].copy()
    w, h = (np.where(sizes[rows, k] > 0, sizes[rows, k], np.nan) for k in (0, 1))
    boxes, bad_box = _array([a.get("bbox") for a in anns], np.float64, 4)
    x, y, bw, bh = boxes.T
    self.bbox = np.stack([y / h, x / w, (y + bh) / h, (x + bw) / w], -1).astype(np.float32)
    area, _ = _array([a.get("area") for a in anns], np.float64)
    self.area = np.where(np.isnan(area), bw * bh, area).astype(np.float32)
    self.label = np.array([label_of.get(a.get("category_id"), -1)
                           if isinstance(a.get("category_id"), int) else -1 for a in anns], np.int64)
    self.is_crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
    self.ann_id = _array([a.get("id", 0) for a in anns], np.int64)[0]
    self.report = {"annotations_of_unknown_images": int(orphans),
                   "unknown_category": int((self.label < 0).sum()), "bad_bbox": int(bad_box.sum())}
    if any(self.report.values()):
      logging.warning("COCO folder %s split %s: %s (kept for the pp ops to drop and count).",
                      root, split, self.report)

  def __len__(self) -> int:
    return len(self.image_ids)

  def image_sizes(self) -> np.ndarray:
    """float64 [N, 2] (height, width) of each image from the json; NaN where missing."""
    return self._sizes_hw.copy()

  def __repr__(self) -> str:
    return f"CocoFolder({self.root!r}, {self.split!r}, {len(self)} images)"

  def __getitem__(self, index) -> dict:
    index = int(index)
    path = os.path.join(self.image_dir, self.file_names[index])
    with open(path, "rb") as f:
      data = f.read()
    try:
      with Image.open(io.BytesIO(data)) as img:  # Reads the header only.
        image = np.asarray(img.convert("RGB")) if self.decode_image else data
    except (OSError, SyntaxError, ValueError) as e:
      raise ValueError(f"Unreadable image {path}: {e}") from e
    lo, hi = self.offsets[index], self.offsets[index + 1]
    return {"image": image, "image/id": self.image_ids[index],
            "image/filename": self.file_names[index].encode(),
            "objects": {"bbox": self.bbox[lo:hi], "label": self.label[lo:hi],
                        "is_crowd": self.is_crowd[lo:hi], "area": self.area[lo:hi],
                        "id": self.ann_id[lo:hi]}}


def folder_ground_truth(root: str, split: str) -> tuple[dict, list[int], list[str]]:
  """The instances json of `split` (sliced to its images if the split is)."""
  base, portion = split_slice(split)
  path = annotation_path(root, base)
  stat = os.stat(path) if os.path.isfile(path) else None
  return _folder_ground_truth(root, base, portion.start, portion.stop,
                              stat and (stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=4)
def _folder_ground_truth(root, base, start, stop, stamp) -> tuple[dict, list[int], list[str]]:
  del stamp  # Part of the cache key only: a rewritten json is read again.
  gt = read_instances(root, base)
  if start is not None or stop is not None:
    images = select_images(gt, slice(start, stop))
    ids = {im["id"] for im in images}
    gt = {**gt, "images": images,
          "annotations": [a for a in gt.get("annotations", []) if a.get("image_id") in ids]}
  categories = sorted(gt.get("categories", []), key=lambda c: c["id"])
  return gt, [int(c["id"]) for c in categories], [str(c.get("name", c["id"])) for c in categories]


def image_size(image) -> tuple[int, int]:
  """(width, height) of encoded bytes (header only) or of a decoded array."""
  if isinstance(image, (bytes, np.bytes_)):
    with Image.open(io.BytesIO(image)) as img:
      return img.size
  image = np.asarray(image)
  return int(image.shape[1]), int(image.shape[0])


def tfds_categories(name: str, source) -> tuple[list[int], list[str]]:
  """Original category ids and names of a TFDS detection source's labels:
  COCO's ids for `coco/*`, else 1..C."""
  try:
    names = list(source.dataset_info.features["objects"]["label"].names)
  except (AttributeError, KeyError, TypeError):
    names = []
  if name.split("/")[0].split(":")[0] == "coco" and len(names) in (0, len(COCO_CATEGORY_IDS)):
    default = names == [str(i) for i in range(len(names))]
    return list(COCO_CATEGORY_IDS), list(COCO_CLASS_NAMES if default else names)
  return list(range(1, len(names) + 1)), names


def records_ground_truth(source, category_ids: list[int], class_names: list[str]) -> dict:
  """A COCO ground-truth dict from records in the TFDS detection layout."""
  images, annotations = [], []
  getitems = getattr(source, "__getitems__", None)
  for start in range(0, len(source), _BATCH):
    keys = list(range(start, min(start + _BATCH, len(source))))
    for record in (getitems(keys) if getitems else [source[k] for k in keys]):
      width, height = image_size(record["image"])
      filename = record.get("image/filename", b"")
      images.append({"id": int(record["image/id"]), "width": width, "height": height,
                     "file_name": filename.decode() if isinstance(filename, bytes) else str(filename)})
      objects = record["objects"]
      box = np.asarray(objects["bbox"], np.float64).reshape(-1, 4)
      labels = np.asarray(objects["label"], np.int64).reshape(-1)
      crowd = np.asarray(objects.get("is_crowd", np.zeros(len(box), bool)), bool).reshape(-1)
      xywh = np.stack([box[:, 1] * width, box[:, 0] * height, (box[:, 3] - box[:, 1]) * width,
                       (box[:, 2] - box[:, 0]) * height], -1)
      area = np.asarray(objects.get("area", xywh[:, 2] * xywh[:, 3]), np.float64).reshape(-1)
      ids = np.asarray(objects.get("id", np.zeros(len(box))), np.int64).reshape(-1)
      if np.any((labels < 0) | (labels >= len(category_ids))):
        raise ValueError(f"Image {images[-1]['id']} has labels {labels.tolist()} outside "
                         f"[0, {len(category_ids)}).")
      for k in range(len(box)):
        annotations.append({"id": int(ids[k]), "image_id": images[-1]["id"],
                            "category_id": int(category_ids[labels[k]]),
                            "bbox": [float(v) for v in xywh[k]], "area": float(area[k]),
                            "iscrowd": int(crowd[k])})
  if len({im["id"] for im in images}) != len(images):
    raise ValueError("Image ids are not unique: COCO evaluation needs one id per image.")
  ann_ids = [a["id"] for a in annotations]
  if min(ann_ids, default=1) < 1 or len(set(ann_ids)) != len(ann_ids):
    # COCOeval reads id 0 as "unmatched" and merges duplicate ids: renumber.
    logging.warning("Annotation ids are missing or repeated; renumbered 1..%d.", len(ann_ids))
    for k, ann in enumerate(annotations, start=1):
      ann["id"] = k
  return {"images": images, "annotations": annotations,
          "categories": [{"id": int(c), "name": str(n)} for c, n in zip(category_ids, class_names)]}
