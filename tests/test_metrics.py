"""Metric files (TensorBoard + JSON lines), throughput/ETA and the NaN guard."""
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from vision_jax import metrics


def test_writer_writes_tensorboard_and_jsonl(tmp_path):
  writer = metrics.MetricWriter(str(tmp_path))
  writer.write(5, {"train/loss": 2.5, "train/accuracy": 0.25})
  writer.write(10, {"train/loss": 1.5})
  writer.close()
  assert metrics.read_metrics(tmp_path) == [
      {"step": 5, "train/loss": 2.5, "train/accuracy": 0.25}, {"step": 10, "train/loss": 1.5}]
  events = EventAccumulator(str(tmp_path))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(5, 2.5), (10, 1.5)]


def test_progress_rates_and_eta(monkeypatch):
  clock = iter([100.0, 110.0])
  monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
  progress = metrics.Progress(first_step=0, total_steps=100, global_batch=32)
  scalars = progress.update(20)
  assert scalars == {"perf/steps_per_sec": 2.0, "perf/examples_per_sec": 64.0,
                     "perf/eta_seconds": 40.0}
  line = progress.line(20, {"train/loss": 0.5, **scalars})
  assert line == "step 20/100 (20.0%) loss=0.5 | 2.00 steps/s 64.0 ex/s ETA 0:00:40"


def test_first_nonfinite_names_the_step():
  metrics.first_nonfinite([(1, 2.0), (2, 1.0)])
  with pytest.raises(metrics.NonFiniteLossError, match="Loss is inf at step 7"):
    metrics.first_nonfinite([(6, 1.0), (7, float("inf")), (8, float("nan"))])


def test_with_progress_logs_rate_and_eta(monkeypatch):
  clock = iter([0.0, 10.0, 20.0, 30.0, 40.0])
  monkeypatch.setattr(metrics.time, "perf_counter", lambda: next(clock))
  lines = []
  monkeypatch.setattr(metrics, "log", lines.append)
  items = list(metrics.with_progress(iter("abcd"), total=4, what="eval", every_seconds=15.0))
  assert items == list("abcd")
  assert lines == ["eval: 2/4 (50%) 0.10/s ETA 0:00:20"]
