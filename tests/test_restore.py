"""Resuming never restarts a run by accident: corrupt steps are set aside, a
checkpoint of another config stops the run, unreachable storage is retried."""
import json
import shutil

import numpy as np
import pytest

from vision_jax import checkpoint, checkpoint_checks as checks, metrics, train
from vision_jax.config import ConfigError
from test_train import saved_state
from tiny_config import tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished 20-step tiny run with checkpoints at steps 10 and 20."""
  workdir = tmp_path_factory.mktemp("trained") / "run"
  train.run(tiny_config(), str(workdir))
  return workdir


@pytest.fixture
def workdir(trained, tmp_path):
  """A fresh copy of the trained run's workdir."""
  copy = tmp_path / "run"
  shutil.copytree(trained, copy)
  return copy


def _steps(workdir):
  return sorted(int(p.name) for p in (workdir / checkpoint.CHECKPOINT_DIR).iterdir()
                if p.name.isdigit())


def _snapshot(workdir):
  """Every file of the checkpoints folder with its bytes."""
  root = workdir / checkpoint.CHECKPOINT_DIR
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("change, first_line", [
    ({"model.width": 16},
     r"params/stage1_block1/conv1/kernel: saved \(3, 3, 8, 8\) float32 vs expected "
     r"\(3, 3, 16, 16\) float32"),
    ({"model.num_classes": 5}, r"params/head/bias: saved \(10,\) float32 vs expected \(5,\)"),
    ({"optimizer.name": "adamw"}, r"opt_state/.*: saved .*, not in this config's state"),
])
def test_another_config_stops_before_compute_and_moves_nothing(workdir, change, first_line):
  before = _snapshot(workdir)
  rows = len(metrics.read_metrics(workdir))
  config_json = (workdir / "config.json").read_text()
  with pytest.raises(ConfigError, match=r"(?s)holds another train state than this config builds"
                                        rf".*{first_line}.*Nothing was restored or moved.*"
                                        r"another --workdir.*config.init_from.path"):
    train.run(tiny_config(**change), str(workdir))
  assert _snapshot(workdir) == before and _steps(workdir) == [10, 20]
  assert not (workdir / checkpoint.CORRUPT_DIR).exists()
  assert len(metrics.read_metrics(workdir)) == rows  # Not a single step was trained.
  assert (workdir / "config.json").read_text() == config_json


def test_eval_mode_with_another_config_fails_clearly(workdir):
  with pytest.raises(ConfigError, match=r"params/head/kernel: saved \(16, 10\) float32 vs "
                                        r"expected \(16, 5\) float32"):
    train.run(tiny_config(**{"model.num_classes": 5}), str(workdir), mode="eval")
  assert _steps(workdir) == [10, 20] and not (workdir / checkpoint.CORRUPT_DIR).exists()


def test_config_resume_of_another_config_fails_clearly(workdir, tmp_path):
  step10 = str(workdir / checkpoint.CHECKPOINT_DIR / "10")
  with pytest.raises(ConfigError, match=r"config.resume=.*/10 holds another train state"):
    train.run(tiny_config(**{"model.width": 4, "resume": step10}), str(tmp_path / "other"))


def test_truncated_newest_file_falls_back_to_the_previous_step(workdir, caplog):
  data = max((workdir / checkpoint.CHECKPOINT_DIR / "20" / "state" / "d").iterdir(),
             key=lambda p: p.stat().st_size)  # The arrays' OCDBT data file.
  data.write_bytes(data.read_bytes()[:len(data.read_bytes()) // 2])
  result = train.run(tiny_config(total_steps=25), str(workdir))
  assert "Checkpoint at step 20" in caplog.text and "falling back" in caplog.text
  assert [p.name.split("-")[0] for p in (workdir / checkpoint.CORRUPT_DIR).iterdir()] == ["20"]
  assert result["step"] == 25
  rows = [r["step"] for r in metrics.read_metrics(workdir) if "train/loss" in r]
  assert rows[-3:] == [15, 20, 25]  # Steps 11-20 were trained again from step 10.


@pytest.mark.parametrize("damage", ["state_metadata", "data_item", "state_item"])
def test_undecodable_or_missing_items_are_corrupt(workdir, damage):
  step20 = workdir / checkpoint.CHECKPOINT_DIR / "20"
  if damage == "state_metadata":
    (step20 / "state" / "_METADATA").write_text('{"tree_metadata": {"par')
  else:
    shutil.rmtree(step20 / damage.split("_")[0])
  ckpt = checkpoint.Checkpointer(str(workdir), keep=3)
  s = train.setup(tiny_config())
  try:
    abstract = checkpoint.abstract_tree(train.jax.eval_shape(s.init_fn), s.state_shardings)
    _, _, step = ckpt.restore_newest(abstract)
  finally:
    ckpt.close()
    s.close()
  assert step == 10 and _steps(workdir) == [10]


class _Flaky:
  """Wraps the Orbax manager's restore to fail like unreachable storage `times` times."""

  def __init__(self, restore, times):
    self.restore, self.times, self.calls = restore, times, 0

  def __call__(self, *args, **kwargs):
    self.calls += 1
    if self.calls <= self.times:
      raise ValueError("UNAVAILABLE: Error reading gs://bucket/run/checkpoints/20/state: "
                       "connection reset")
    return self.restore(*args, **kwargs)


def _restore(workdir, times):
  s = train.setup(tiny_config())
  ckpt = checkpoint.Checkpointer(str(workdir), keep=3, retry_delays=(0.0, 0.0))
  flaky = _Flaky(ckpt._manager.restore, times)  # pylint: disable=protected-access
  ckpt._manager.restore = flaky  # pylint: disable=protected-access
  try:
    abstract = checkpoint.abstract_tree(train.jax.eval_shape(s.init_fn), s.state_shardings)
    return ckpt.restore_newest(abstract), flaky.calls
  finally:
    ckpt.close()
    s.close()


def test_transient_read_errors_are_retried_then_fail_without_moving(workdir):
  (state, _, step), calls = _restore(workdir, times=2)
  assert (step, calls) == (20, 3)
  np.testing.assert_array_equal(state["params"]["head"]["kernel"],
                                saved_state(workdir, 20)["params"]["head"]["kernel"])
  with pytest.raises(checks.CheckpointReadError, match=r"after 3 attempts.*UNAVAILABLE.*"
                                                       "Nothing was set aside"):
    _restore(workdir, times=3)
  assert _steps(workdir) == [10, 20] and not (workdir / checkpoint.CORRUPT_DIR).exists()


@pytest.mark.parametrize("error, kind", [
    (ValueError("DATA_LOSS: Error decoding b-tree node: CRC-32C checksum verification failed"),
     checks.CORRUPT),
    (ValueError("OUT_OF_RANGE: Requested byte range [0, 23657) is not valid"), checks.CORRUPT),
    (ValueError("NOT_FOUND: Error reading local file .../d/e287"), checks.CORRUPT),
    (json.JSONDecodeError("Unterminated string", '{"a', 1), checks.CORRUPT),
    (KeyError('Item "state" was not found in the checkpoint.'), checks.CORRUPT),
    (FileNotFoundError("no state item"), checks.CORRUPT),
    (ValueError("UNAVAILABLE: connection reset"), checks.TRANSIENT),
    (ValueError("DEADLINE_EXCEEDED: GCS read"), checks.TRANSIENT),
    (ValueError("PERMISSION_DENIED: 403"), checks.TRANSIENT),
    (ConnectionResetError("reset by peer"), checks.TRANSIENT),
    (TimeoutError("timed out"), checks.TRANSIENT),
    (PermissionError("denied"), checks.TRANSIENT),
    (ValueError("Requested shape: (5,) is not compatible with the stored shape: (10,)"),
     checks.OTHER),
    (TypeError("unexpected"), checks.OTHER),
])
def test_only_failures_that_say_the_bytes_are_bad_count_as_corrupt(error, kind):
  assert checks.failure_kind(error) == kind


def _as_process_0_of_2(monkeypatch, other: dict) -> None:
  """From now on the checkpointer agrees with a second process that reports
  `other[step]` (default: fine) for each step."""
  steps = []
  original = checkpoint.Checkpointer._try_restore  # pylint: disable=protected-access

  def tracked(self, step, abstract):
    steps.append(step)
    return original(self, step, abstract)

  monkeypatch.setattr(checkpoint.Checkpointer, "_try_restore", tracked)
  monkeypatch.setattr(checkpoint, "_agree", lambda outcome: max(
      outcome, other.get(steps[-1], checkpoint._OK)))  # pylint: disable=protected-access


def test_processes_agree_on_the_step_they_restore(workdir, monkeypatch):
  s = train.setup(tiny_config())
  ckpt = checkpoint.Checkpointer(str(workdir), keep=3)
  other = {20: checkpoint._CORRUPT}  # pylint: disable=protected-access
  try:
    abstract = checkpoint.abstract_tree(train.jax.eval_shape(s.init_fn), s.state_shardings)
    _as_process_0_of_2(monkeypatch, other)
    _, _, step = ckpt.restore_newest(abstract)
    assert step == 10 and _steps(workdir) == [10]  # Readable here, unreadable there: set aside.
    other[10] = checkpoint._STOP  # pylint: disable=protected-access
    with pytest.raises(checks.CheckpointReadError, match="Another process could not restore "
                                                         "checkpoint step 10"):
      ckpt.restore_newest(abstract)
    assert _steps(workdir) == [10]
  finally:
    monkeypatch.undo()
    ckpt.close()
    s.close()
