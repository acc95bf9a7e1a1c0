"""Random-access sources by dataset name.

TFDS names read through `data_source` (ArrayRecord); "coco_folder" reads a
COCO-layout folder and "seg_folder" an mmsegmentation-layout one (data_dir =
its root) and "lane_folder" a CULane-layout one; embedded datasets are generated on first use, either as TFDS
datasets or as folders of either layout.
"""
import jax
import numpy as np
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from vision_jax import data, metrics
from vision_jax.data import coco, lane_folder, seg_folder
from vision_jax.errors import DataMissingError  # pylint: disable=unused-import  # Raised from here.


COCO_FOLDER = "coco_folder"
SEG_FOLDER = "seg_folder"
LANE_FOLDER = "lane_folder"


def _prepare_help(name: str, data_dir: str | None) -> str:
  where = f" --data_dir={data_dir}" if data_dir else ""
  return (f"Prepare it once, on a machine that can download it, with\n"
          f"  tfds build {name}{where} --file_format=array_record\n"
          f"(or download_and_prepare(file_format='array_record') in Python) and point "
          f"config.data.data_dir at that directory. Grain reads the ArrayRecord format only.")


def _prepare_once(builder) -> None:
  """Builds an embedded dataset: process 0 first (data_dir may be shared), then
  any host whose own data_dir still lacks it. Every process reaches the
  barrier, prepared or not, so hosts with their own disks cannot deadlock."""
  if jax.process_index() == 0 and not builder.is_prepared():
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"prepared {builder.name}")
    if not builder.is_prepared():
      builder.download_and_prepare()


def _folder_root(name: str, data_dir: str | None, folder_name: str, layout: str,
                 expected: str) -> str | None:
  if name == folder_name:
    if not data_dir:
      raise DataMissingError(f"Dataset {folder_name!r} reads a folder: set config.data.data_dir "
                             f"to its root (with {expected}).")
    return data_dir
  if name in data.EMBEDDED_DATASETS:
    cls = data.EMBEDDED_DATASETS.get(name)
    if not issubclass(cls, tfds.core.DatasetBuilder) and cls.layout == layout:
      builder = cls(data_dir=data_dir)
      _prepare_once(builder)
      return builder.root
  return None


def coco_root(name: str, data_dir: str | None) -> str | None:
  """The COCO-layout folder behind `name`, or None for another kind: data_dir
  for "coco_folder"; for an embedded COCO-layout dataset, its directory
  (generated first if needed, once per host)."""
  return _folder_root(name, data_dir, COCO_FOLDER, "coco",
                      "annotations/instances_<split>.json and <split>/<images>")


def segmentation_root(name: str, data_dir: str | None) -> str | None:
  """The mmseg-layout folder behind `name` ("seg_folder" or embedded), or None."""
  return _folder_root(name, data_dir, SEG_FOLDER, "segmentation",
                      "images/<split>/ and annotations/<split>/<same stem>.png")


def lane_root(name: str, data_dir: str | None) -> str | None:
  """The CULane-layout folder behind `name` ("lane_folder" or embedded), or None."""
  return _folder_root(name, data_dir, LANE_FOLDER, "lanes",
                      "list/<split>.txt and the images it lists, each with its .lines.txt")


def _tfds_builder(name: str, data_dir: str | None):
  try:
    return tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise DataMissingError(f"Unknown dataset {name!r}: neither embedded "
                           f"({', '.join(data.EMBEDDED_DATASETS.names())}), "
                           f"{COCO_FOLDER!r}, nor in TFDS. {e}") from None
  except ImportError as e:  # Some builders' code needs TensorFlow; prepared files do not.
    try:
      return tfds.core.read_only_builder.builder_from_files(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError:
      raise DataMissingError(
          f"TFDS dataset {name!r} is not prepared in {data_dir or 'the default data_dir'}, and "
          f"its builder code cannot run here ({e}).\n" + _prepare_help(name, data_dir)) from e


def open_source(name: str, split: str, data_dir: str | None, skip_decoding=(), *,
                drop_empty: bool = False):
  """Returns a random-access source of examples for `name`/`split`.

  Embedded datasets are built in `data_dir` on first use; any other TFDS name
  must already be prepared, or a `DataMissingError` says how to prepare it.
  COCO-layout folders ("coco_folder", "shapes_demo") give records in the TFDS
  `coco/2017` layout, mmseg-layout ones ("seg_folder", "shapes_seg_demo")
  `seg_folder` records. `drop_empty` keeps only the images with an annotation
  (from the json for folders; by reading each record once for TFDS).
  """
  root = coco_root(name, data_dir)
  if root is not None:
    return coco.CocoFolder(root, split, decode_image="image" not in skip_decoding,
                           drop_empty=drop_empty)
  root = segmentation_root(name, data_dir)
  if root is not None:
    return seg_folder.SegmentationFolder(root, split)
  root = lane_root(name, data_dir)
  if root is not None:
    return lane_folder.LaneFolder(root, split)
  decoders = {key: tfds.decode.SkipDecoding() for key in skip_decoding}
  if name in data.EMBEDDED_DATASETS:
    builder = data.EMBEDDED_DATASETS.get(name)(data_dir=data_dir, file_format="array_record")
    _prepare_once(builder)
  else:
    builder = _tfds_builder(name, data_dir)
  if builder.info.splits and split.split("[")[0] not in builder.info.splits:
    raise DataMissingError(f"Dataset {name!r} has no split {split!r}; it has "
                           f"{', '.join(builder.info.splits)}.")
  decoders = {k: v for k, v in decoders.items() if k in builder.info.features}
  try:
    source = builder.as_data_source(split, decoders=decoders or None)
  except (NotImplementedError, FileNotFoundError, AssertionError) as e:
    state = ("is prepared but not as ArrayRecord" if builder.is_prepared()
             else "is not prepared")
    raise DataMissingError(f"TFDS dataset {name!r} {state} in {builder.data_dir}.\n"
                           + _prepare_help(name, data_dir)) from e
  return AnnotatedOnly(source, f"{name}:{split}") if drop_empty else source


class AnnotatedOnly:
  """The records of a detection source with at least one object, in order
  (mmdetection's `filter_empty_gt`); `empty_dropped` counts the others.

  Finding them reads every record once (images are not decoded), on process
  0, which shares the result with the other processes.
  """

  def __init__(self, source, what: str, batch: int = 256):
    self._source = source
    n = len(source)
    annotated = np.zeros(n, bool)
    if jax.process_index() == 0:
      getitems = getattr(source, "__getitems__", None)
      starts = range(0, n, batch)
      for start in metrics.with_progress(starts, len(starts), f"finding annotated images of {what}"):
        keys = list(range(start, min(start + batch, n)))
        records = getitems(keys) if getitems else [source[k] for k in keys]
        annotated[start:start + len(keys)] = [_has_objects(r) for r in records]
    if jax.process_count() > 1:
      annotated = np.asarray(multihost_utils.broadcast_one_to_all(annotated))
    self._index = np.flatnonzero(annotated)
    self.empty_dropped = n - len(self._index)
    self.dataset_info = getattr(source, "dataset_info", None)

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, index):
    return self._source[int(self._index[int(index)])]

  def image_sizes(self):
    """The kept records' (h, w), if the source has a table of them (else NaN)."""
    own = getattr(self._source, "image_sizes", None)
    return own()[self._index] if own else np.full((len(self), 2), np.nan)

  def __repr__(self) -> str:
    return f"AnnotatedOnly({self._source!r}, {len(self)} of {len(self._source)} records)"


def _has_objects(record) -> bool:
  objects = record.get("objects") if isinstance(record, dict) else None
  if objects is None:
    raise ValueError("drop_empty needs detection records with an 'objects' feature.")
  return len(np.asarray(objects["label"]).reshape(-1)) > 0
