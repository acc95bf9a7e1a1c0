"""Metric logging (TensorBoard + JSON lines), throughput with ETA, and the NaN guard."""
import io
import json
import logging as pylogging
import math
import os
import re
import time
from typing import Iterable, Iterator, Mapping

import jax
import numpy as np
from absl import logging
from etils import epath

from vision_jax import files

METRICS_FILE = "metrics.jsonl"
PICTURES_DIR = "pictures"


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or infinite; the message names the step."""


class MetricWriter:
  """Writes scalars to TensorBoard event files and `metrics.jsonl`, and images to
  TensorBoard and `pictures/<name>_<step>.png` (process 0 only).

  `scalars=False` (re-evaluating a finished run) writes images only, so the
  run's metric history is not appended to twice.
  """

  def __init__(self, workdir: str, scalars: bool = True):
    self._active = jax.process_index() == 0
    self._scalars = scalars
    self._workdir = workdir
    self._tb = None
    self._jsonl = None
    if self._active:
      from tensorboardX import SummaryWriter
      epath.Path(workdir).mkdir(parents=True, exist_ok=True)
      self._tb = SummaryWriter(logdir=str(workdir), flush_secs=30)
      if scalars:
        self._jsonl = files.JsonLines(os.path.join(workdir, METRICS_FILE))

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if not (self._active and self._scalars):
      return
    clean = {k: float(v) for k, v in scalars.items()}
    for name, value in clean.items():
      self._tb.add_scalar(name, value, step)
    self._jsonl.append(json.dumps({"step": int(step), **clean}))

  def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> list[str]:
    """uint8 [H, W, 3] images; returns the PNG paths written."""
    if not self._active or not images:
      return []
    from PIL import Image
    folder = os.path.join(self._workdir, PICTURES_DIR)
    paths = []
    for name, image in images.items():
      image = np.asarray(image, np.uint8)
      self._tb.add_image(name, image, step, dataformats="HWC")
      path = os.path.join(folder, f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}_{int(step)}.png")
      png = io.BytesIO()
      Image.fromarray(image).save(png, format="PNG")
      files.write_atomic(path, png.getvalue())
      paths.append(path)
    self._tb.flush()
    return paths

  def close(self) -> None:
    if self._active:
      self._tb.close()
      if self._jsonl is not None:
        self._jsonl.close()


def read_metrics(workdir: str) -> list[dict]:
  """Rows of `metrics.jsonl`, in the order written."""
  text = files.read_text(os.path.join(workdir, METRICS_FILE))
  return [json.loads(line) for line in text.splitlines() if line.strip()]


def _duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
  """Steps/s, examples/s and ETA between calls to `update`."""

  def __init__(self, first_step: int, total_steps: int, global_batch: int):
    self.total_steps, self.global_batch = total_steps, global_batch
    self._last_step, self._last_time = first_step, time.perf_counter()

  def update(self, step: int) -> dict[str, float]:
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    return {"perf/steps_per_sec": rate, "perf/examples_per_sec": rate * self.global_batch,
            "perf/eta_seconds": (self.total_steps - step) / max(rate, 1e-9)}

  def line(self, step: int, scalars: Mapping[str, float]) -> str:
    shown = " ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in scalars.items()
                     if not k.startswith("perf/"))
    return (f"step {step}/{self.total_steps} ({100.0 * step / self.total_steps:.1f}%) {shown} | "
            f"{scalars['perf/steps_per_sec']:.2f} steps/s "
            f"{scalars['perf/examples_per_sec']:.1f} ex/s ETA {_duration(scalars['perf/eta_seconds'])}")


def with_progress(items: Iterable, total: int, what: str, every_seconds: float = 30.0) -> Iterator:
  """Yields `items`, logging done/total with rate and ETA every `every_seconds`."""
  start = last = time.perf_counter()
  for done, item in enumerate(items, 1):
    yield item
    now = time.perf_counter()
    if now - last >= every_seconds and done < total:
      last = now
      rate = done / (now - start)
      log(f"{what}: {done}/{total} ({100.0 * done / total:.0f}%) {rate:.2f}/s "
          f"ETA {_duration((total - done) / rate)}")


def first_nonfinite(losses: list[tuple[int, float]]) -> None:
  """Raises NonFiniteLossError at the first (step, loss) that is NaN or inf."""
  for step, loss in losses:
    if not math.isfinite(loss):
      raise NonFiniteLossError(f"Loss is {loss} at step {step}; stopping. The last good "
                               f"checkpoint is kept; lower the learning rate or inspect the batch.")


# Metrics that describe the state after a step (e.g. the measured sparsity):
# logged at their last value, not averaged over the steps since the last line.
GAUGE_PREFIXES = ("train/sparsity/",)


def summarize(history: list[dict[str, np.ndarray]]) -> dict[str, float]:
  """Means of per-step metric dicts (already on host); gauges: the last value."""
  return {k: float(history[-1][k] if k.startswith(GAUGE_PREFIXES) else np.mean([h[k] for h in history]))
          for k in history[0]}


class _LibraryInfoFilter(pylogging.Filter):
  """Drops INFO records of chatty libraries (Orbax, Grain, TFDS, JAX)."""

  LIBRARIES = ("orbax", "grain", "tensorflow_datasets", "etils", "jax/_src")

  def filter(self, record: pylogging.LogRecord) -> bool:
    path = record.pathname.replace(os.sep, "/")
    return record.levelno >= pylogging.WARNING or not any(f"/{lib}/" in path
                                                         for lib in self.LIBRARIES)


def quiet_library_logs() -> None:
  """Keeps the console to this library's progress lines and all warnings."""
  handler = logging.get_absl_handler()
  if not any(isinstance(f, _LibraryInfoFilter) for f in handler.filters):
    handler.addFilter(_LibraryInfoFilter())


def log(line: str) -> None:
  if jax.process_index() == 0:
    logging.info(line)
