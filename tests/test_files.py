"""Workdir files on a local disk and on an object store (gs://, faked by a
folder through etils' epath mock, with appends refused as GCS refuses them)."""
import contextlib
import io
import pathlib

import numpy as np
import pytest
from etils.epath import testing as epath_testing
from PIL import Image

from vision_jax import files, metrics


@contextlib.contextmanager
def fake_bucket(root: pathlib.Path):
  """gs://<path> lives at root/<path>; opening a gs:// path for appending fails."""
  def local(path):
    text = str(path)
    return str(root / text[len("gs://"):]) if text.startswith("gs://") else text

  def open_(fn, path, mode="r", **kwargs):
    if str(path).startswith("gs://") and "a" in mode:
      raise io.UnsupportedOperation("object stores cannot append")
    return fn(local(path), mode, **kwargs)

  one = lambda fn, path, *args, **kwargs: fn(local(path), *args, **kwargs)
  two = lambda fn, path, dst, *args, **kwargs: fn(local(path), local(dst), *args, **kwargs)
  with epath_testing.mock_epath(open=open_, exists=one, isdir=one, listdir=one, glob=one,
                                makedirs=one, mkdir=one, remove=one, rmtree=one, stat=one,
                                rename=two, replace=two):
    yield


def test_local_write_atomic_replaces_whole_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "eval" / "results.json"
  files.write_atomic(path, "first")
  files.write_atomic(path, b"second")
  assert path.read_text() == "second"
  assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_remote_paths_stay_urls():
  assert files.absolute("gs://bucket/run") == "gs://bucket/run"
  assert files.absolute("run") == str(pathlib.Path("run").absolute())


def test_json_lines_append_locally_and_rewrite_remotely(tmp_path):
  local = tmp_path / "local.jsonl"
  with fake_bucket(tmp_path / "bucket"):
    for path in (str(local), "gs://b/run/metrics.jsonl"):
      for rows in (["1", "2"], ["3"]):  # A second writer (a resumed run) keeps the first's rows.
        writer = files.JsonLines(path)
        for row in rows:
          writer.append(row)
        writer.close()
      assert files.read_text(path) == "1\n2\n3\n"
  assert (tmp_path / "bucket" / "b" / "run" / "metrics.jsonl").read_text() == "1\n2\n3\n"


class _NoTensorBoard:
  def __init__(self, logdir, flush_secs):
    self.logdir = logdir

  def __getattr__(self, name):
    return lambda *args, **kwargs: None


def test_metric_writer_on_a_bucket(tmp_path, monkeypatch):
  import tensorboardX
  monkeypatch.setattr(tensorboardX, "SummaryWriter", _NoTensorBoard)
  with fake_bucket(tmp_path):
    writer = metrics.MetricWriter("gs://b/run")
    writer.write(10, {"train/loss": 1.5})
    writer.write(20, {"train/loss": 0.5})
    (png,) = writer.write_images(20, {"coco/detections": np.full((4, 6, 3), 200, np.uint8)})
    writer.close()
    assert metrics.read_metrics("gs://b/run") == [{"step": 10, "train/loss": 1.5},
                                                   {"step": 20, "train/loss": 0.5}]
  assert png == "gs://b/run/pictures/coco_detections_20.png"
  image = np.asarray(Image.open(tmp_path / "b" / "run" / "pictures" / "coco_detections_20.png"))
  assert image.shape == (4, 6, 3) and (image == 200).all()


def test_fake_bucket_refuses_appends(tmp_path):
  from etils import epath
  with fake_bucket(tmp_path), pytest.raises(io.UnsupportedOperation):
    epath.Path("gs://b/x").open("a")
