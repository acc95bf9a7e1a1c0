"""Lane datasets in CULane's layout (Pan et al., AAAI 2018; the official
list files): `<root>/list/<split>.txt` names one image per line, relative to
the root,

  /driver_23_30frame/05151649_0422.MP4/00000.jpg [/laneseg_label_w16/.../00000.png e1 e2 e3 e4]

optionally followed by its lane-segmentation PNG (0 background, k = lane
slot k) and the four existence flags ("train_gt", "val_gt"; "test" lists
images only). Each image's lanes are in `<image stem>.lines.txt` beside it,
one lane per line as "x1 y1 x2 y2 ..." in original pixels.

`LaneFolder` serves records
  {"image": encoded bytes, "segmentation": PNG bytes (b"" without one),
   "lanes/exist": float32 [4], "lanes/lines": the .lines.txt bytes (b"" without one),
   "image/id": int64 (line in the list), "image/filename": bytes};
the `lane_targets` pp op parses and checks them, so a malformed record is
skipped and counted by the pipeline, never fatal.
"""
import os

import numpy as np

from vision_jax.batch import LANE_EXIST
from vision_jax.data import coco
from vision_jax.errors import DataMissingError

NUM_SLOTS = 4  # CULane annotates at most 4 lanes, in fixed left-to-right slots.
LINES = "lanes/lines"


def lines_path(image_path: str) -> str:
  return os.path.splitext(image_path)[0] + ".lines.txt"


def parse_list_line(line: str, number: int, list_path: str) -> tuple[str, str, np.ndarray]:
  """(image path, label path or "", exist flags float32 [4]) of one list line."""
  fields = line.split()
  if len(fields) not in (1, 2 + NUM_SLOTS):
    raise DataMissingError(f"{list_path}:{number}: expected an image path, optionally followed "
                           f"by a label path and {NUM_SLOTS} existence flags; got {line!r}.")
  exist = np.zeros(NUM_SLOTS, np.float32)
  if len(fields) > 1:
    try:
      exist = np.asarray([float(f) for f in fields[2:]], np.float32)
    except ValueError:
      raise DataMissingError(f"{list_path}:{number}: existence flags {fields[2:]} are not "
                             "numbers.") from None
  return fields[0].lstrip("/"), (fields[1].lstrip("/") if len(fields) > 1 else ""), exist


class LaneFolder:
  """Random-access records of one list of a CULane-layout folder; picklable.
  Splits can be sliced like TFDS's: "val_gt[:100]"."""

  def __init__(self, root: str, split: str):
    base, portion = coco.split_slice(split)
    self.root, self.split = root, split
    list_path = os.path.join(root, "list", f"{base}.txt")
    if not os.path.isfile(list_path):
      raise DataMissingError(
          f"Lane folder {root!r} has no split {base!r}: expected the list {list_path} "
          "(CULane's layout: list/<split>.txt of image paths relative to the root, "
          "with <image>.lines.txt beside each image).")
    with open(list_path) as f:
      rows = [parse_list_line(line, n + 1, list_path)
              for n, line in enumerate(f) if line.strip()]
    keep = coco.resolve_slice(portion, len(rows))
    self.image_ids = np.arange(len(rows), dtype=np.int64)[keep]
    self.rows = [rows[i] for i in self.image_ids]

  def __len__(self) -> int:
    return len(self.rows)

  def __repr__(self) -> str:
    return f"LaneFolder({self.root!r}, {self.split!r}, {len(self)} images)"

  def _read(self, path: str, required: bool) -> bytes:
    full = os.path.join(self.root, path)
    if not required and not os.path.isfile(full):
      return b""
    with open(full, "rb") as f:
      return f.read()

  def __getitem__(self, index) -> dict:
    index = int(index)
    image, label, exist = self.rows[index]
    return {"image": self._read(image, True),
            "segmentation": self._read(label, True) if label else b"",
            LANE_EXIST: exist.copy(), LINES: self._read(lines_path(image), False),
            "image/id": self.image_ids[index], "image/filename": image.encode()}
