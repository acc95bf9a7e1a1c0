"""Segmentation folders in mmsegmentation's layout: `<root>/images/<split>/`
holds the images (any format PIL reads) and `<root>/annotations/<split>/`
one PNG label map per image with the same file stem (ADE20K's
ADEChallengeData2016 ships this way, splits "training" / "validation").

`SegmentationFolder` serves them as records
  {"image": encoded bytes, "segmentation": encoded PNG bytes,
   "image/id": int64 (position in the sorted file list), "image/filename": bytes};
images without a label map are left out and counted in `report`; label maps
are decoded (and checked) by the `seg_label` pp op, so a malformed one is
skipped and counted by the pipeline, never fatal.
"""
import os

import numpy as np
from absl import logging

from vision_jax.data import coco
from vision_jax.errors import DataMissingError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def split_dirs(root: str, split: str) -> tuple[str, str]:
  return os.path.join(root, "images", split), os.path.join(root, "annotations", split)


class SegmentationFolder:
  """Random-access records of one split of an mmseg-layout folder; picklable."""

  def __init__(self, root: str, split: str):
    base, portion = coco.split_slice(split)
    self.root, self.split = root, split
    self.image_dir, self.label_dir = split_dirs(root, base)
    if not os.path.isdir(self.image_dir) or not os.path.isdir(self.label_dir):
      raise DataMissingError(
          f"Segmentation folder {root!r} has no split {base!r}: expected images under "
          f"{self.image_dir}/ and PNG label maps under {self.label_dir}/.")
    labels = {os.path.splitext(n)[0]: n for n in os.listdir(self.label_dir)
              if n.lower().endswith(".png")}
    images = sorted(n for n in os.listdir(self.image_dir)
                    if n.lower().endswith(IMAGE_EXTENSIONS))
    paired = [n for n in images if os.path.splitext(n)[0] in labels]
    self.report = {"images_without_label": len(images) - len(paired),
                   "labels_without_image": len(set(labels) - {os.path.splitext(n)[0]
                                                              for n in images})}
    if any(self.report.values()):
      logging.warning("Segmentation folder %s split %s: %s (left out).", root, base, self.report)
    ids = np.arange(len(paired), dtype=np.int64)
    keep = coco.resolve_slice(portion, len(paired))
    self.image_names = paired[keep]
    self.label_names = [labels[os.path.splitext(name)[0]] for name in self.image_names]
    self.image_ids = ids[keep]

  def __len__(self) -> int:
    return len(self.image_names)

  def __repr__(self) -> str:
    return f"SegmentationFolder({self.root!r}, {self.split!r}, {len(self)} images)"

  def __getitem__(self, index) -> dict:
    index = int(index)
    with open(os.path.join(self.image_dir, self.image_names[index]), "rb") as f:
      image = f.read()
    with open(os.path.join(self.label_dir, self.label_names[index]), "rb") as f:
      label = f.read()
    return {"image": image, "segmentation": label, "image/id": self.image_ids[index],
            "image/filename": self.image_names[index].encode()}
