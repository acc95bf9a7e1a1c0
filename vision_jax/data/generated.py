"""Embedded datasets written as folders on first use (`shapes_demo`,
`shapes_seg_demo`): the builder protocol `sources.open_source` uses for them
(`name`, `layout`, `root`, `is_prepared`, `download_and_prepare`).

Preparation writes into a temporary sibling directory and renames it into
place, so concurrent preparers (processes, hosts sharing a disk) are safe:
the first rename wins and the others discard their copy.
"""
import os
import shutil
import tempfile


def default_root() -> str:
  return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


class GeneratedFolder:
  """A dataset in `<data_dir>/<name>/<version>/`; subclasses set `name`,
  `version`, `layout` ("coco" or "segmentation") and write the files."""
  name: str
  version: str
  layout: str

  def __init__(self, data_dir: str | None = None, **unused):
    del unused  # Accepts TFDS builder keywords (file_format, ...) for uniformity.
    self.data_dir = os.path.expanduser(data_dir) if data_dir else default_root()
    self.root = os.path.join(self.data_dir, self.name, self.version)

  def prepared_files(self) -> list[str]:
    """Paths (relative to the root) that exist once the dataset is written."""
    raise NotImplementedError

  def write(self, directory: str) -> None:
    raise NotImplementedError

  def is_prepared(self) -> bool:
    return all(os.path.isfile(os.path.join(self.root, p)) for p in self.prepared_files())

  def download_and_prepare(self) -> None:
    """Generates the files (nothing is downloaded); a no-op once prepared."""
    if self.is_prepared():
      return
    parent = os.path.dirname(self.root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{self.version}.incomplete.", dir=parent)
    try:
      self.write(tmp)
      try:
        os.rename(tmp, self.root)
      except OSError:
        if not self.is_prepared():
          raise
    finally:
      shutil.rmtree(tmp, ignore_errors=True)
