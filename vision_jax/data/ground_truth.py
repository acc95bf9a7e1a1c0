"""The COCO ground truth of any detection split, for evaluators: a COCO-layout
folder's instances json as is, or one rebuilt from a TFDS split's records."""
import functools

from vision_jax.data import coco, sources


@functools.lru_cache(maxsize=4)
def _from_tfds(name: str, split: str, data_dir: str | None):
  source = sources.open_source(name, split, data_dir, skip_decoding=("image",))
  category_ids, class_names = coco.tfds_categories(name, source)
  return coco.records_ground_truth(source, category_ids, class_names), category_ids, class_names


def load(name: str, split: str, data_dir: str | None = None
         ) -> tuple[dict, list[int], list[str]]:
  """(COCO ground-truth dict, original category id of each contiguous label,
  class names) of a detection split: "coco_folder" (data_dir = root), an
  embedded COCO-layout dataset ("shapes_demo") or a TFDS name ("coco/2017").

  The dict (images with id/width/height/file_name, annotations with pixel xywh
  bbox/area/iscrowd, categories with their original ids) is cached per split
  and shared between callers: treat it as read-only. From TFDS records, areas
  are TFDS's int64 (truncated) segment areas and image sizes come from the
  image headers.
  """
  root = sources.coco_root(name, data_dir)
  if root is not None:
    return coco.folder_ground_truth(root, split)
  return _from_tfds(name, split, data_dir)
