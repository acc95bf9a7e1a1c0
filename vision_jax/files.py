"""Files of a workdir on a local disk or an object store (gs://, s3://) through
`etils.epath`, the file layer Orbax and TFDS use too.

Local writes go to a temporary file that is then renamed, so a crash never
leaves half a file; an object store replaces an object whole, so remote writes
go straight to their path. Object stores cannot append: `JsonLines` rewrites a
remote file with every row, and appends to a local one.
"""
import os
import uuid

from etils import epath


def is_remote(path: str | os.PathLike) -> bool:
  return "://" in str(path)


def absolute(path: str | os.PathLike) -> str:
  """`path` made absolute if local; URLs unchanged."""
  return str(path) if is_remote(path) else os.path.abspath(path)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
  """Writes `data` to `path` (creating its folder); readers never see a partial file."""
  target = epath.Path(path)
  target.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(path):
    _write(target, data)
    return
  tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
  try:
    _write(tmp, data)
    os.replace(tmp, target)
  finally:
    if tmp.exists():
      tmp.unlink()


def _write(path: epath.Path, data: str | bytes) -> None:
  if isinstance(data, bytes):
    path.write_bytes(data)
  else:
    path.write_text(data)


def read_text(path: str | os.PathLike) -> str:
  return epath.Path(path).read_text()


class JsonLines:
  """A text file that grows by whole lines (rows already there are kept)."""

  def __init__(self, path: str | os.PathLike):
    self.path = epath.Path(path)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._remote = is_remote(path)
    if self._remote:
      self._text = self.path.read_text() if self.path.exists() else ""
      self._file = None
    else:
      self._file = open(self.path, "a", encoding="utf-8")

  def append(self, line: str) -> None:
    if self._remote:
      self._text += line + "\n"
      self.path.write_text(self._text)
    else:
      self._file.write(line + "\n")
      self._file.flush()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
