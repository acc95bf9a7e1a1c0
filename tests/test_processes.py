"""Whole runs in subprocesses: kill -9 and resume, SIGTERM, two-process training."""
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vision_jax import metrics
from test_train import assert_trees_equal, saved_state

TINY = pathlib.Path(__file__).parent / "tiny_config.py"


def launch(workdir, *flags, devices=8, log=None, config=f"{TINY}"):
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  cmd = [sys.executable, "-m", "vision_jax.main", f"--config={config}", f"--workdir={workdir}",
         *flags]
  out = open(log or os.devnull, "w")
  return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def finish(proc, timeout=300):
  assert proc.wait(timeout=timeout) == 0, f"{proc.args} exited with {proc.returncode}"


def logged_steps(workdir) -> int:
  try:
    return max((r["step"] for r in metrics.read_metrics(workdir) if "train/loss" in r), default=0)
  except FileNotFoundError:
    return 0


def wait_for_step(proc, workdir, step, timeout=300):
  deadline = time.time() + timeout
  while logged_steps(workdir) < step:
    assert proc.poll() is None, f"exited ({proc.returncode}) before step {step}"
    assert time.time() < deadline, f"step {step} not reached in {timeout}s"
    time.sleep(0.05)


def train_rows(workdir) -> dict[int, dict]:
  """The last row written for each step, without timing columns."""
  rows = {}
  for r in metrics.read_metrics(workdir):
    if "train/loss" in r:
      rows[r["step"]] = {k: v for k, v in r.items() if not k.startswith("perf/")}
  return rows


def wait_for_checkpoint(proc, workdir, timeout=300):
  directory = pathlib.Path(workdir) / "checkpoints"
  deadline = time.time() + timeout
  while not (directory.exists() and any(p.name.isdigit() for p in directory.iterdir())):
    assert proc.poll() is None, f"exited ({proc.returncode}) before its first checkpoint"
    assert time.time() < deadline, f"no checkpoint in {timeout}s"
    time.sleep(0.02)


LONG = ["--config.total_steps=60", "--config.checkpoint_every_steps=10",
        "--config.log_every_steps=5"]


def test_kill_9_then_resume_is_bit_identical(tmp_path):
  """With GraNet's pruning and regrowth on (`tiny_config.py:sparse`): the
  masks in the optimizer state resume exactly too."""
  sparse = f"{TINY}:sparse"
  straight = launch(tmp_path / "straight", *LONG, config=sparse)
  finish(straight)
  killed = launch(tmp_path / "killed", *LONG, log=tmp_path / "killed.log", config=sparse)
  wait_for_checkpoint(killed, tmp_path / "killed")
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert logged_steps(tmp_path / "killed") < 60, "the run finished before it could be killed"
  resumed = launch(tmp_path / "killed", *LONG, log=tmp_path / "resumed.log", config=sparse)
  finish(resumed)
  assert "Resumed from" in (tmp_path / "resumed.log").read_text()
  state = saved_state(tmp_path / "straight")
  assert_trees_equal(state, saved_state(tmp_path / "killed"))
  assert train_rows(tmp_path / "straight") == train_rows(tmp_path / "killed")
  rows = train_rows(tmp_path / "straight")
  assert rows[60]["train/sparsity/masks"] == pytest.approx(0.7, abs=1e-3)  # Density 0.3.


def test_sigterm_saves_a_restorable_checkpoint(tmp_path):
  proc = launch(tmp_path, "--config.total_steps=100000", "--config.checkpoint_every_steps=100000",
                "--config.log_every_steps=5")
  wait_for_step(proc, tmp_path, 10)
  proc.send_signal(signal.SIGTERM)
  finish(proc, timeout=120)
  steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert len(steps) == 1 and 10 <= steps[0] < 100000
  state = saved_state(tmp_path)
  assert int(state["step"]) == steps[0]
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))
  resumed = launch(tmp_path, f"--config.total_steps={steps[0] + 5}", "--config.log_every_steps=5",
                   log=tmp_path / "resumed.log")
  finish(resumed)
  assert f"Resumed from {tmp_path / 'checkpoints'} at step {steps[0]}" in \
      (tmp_path / "resumed.log").read_text()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_train_like_one(tmp_path):
  common = ["--config.total_steps=10", "--config.checkpoint_every_steps=10"]
  single = launch(tmp_path / "single", *common, devices=4)
  address = f"127.0.0.1:{_free_port()}"
  procs = [launch(tmp_path / "multi", *common, f"--config.distributed.coordinator_address={address}",
                  "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}",
                  devices=2, log=tmp_path / f"process{i}.log") for i in range(2)]
  for proc in [single, *procs]:
    finish(proc)
  assert "mesh {'data': 4, 'fsdp': 1, 'model': 1}" in (tmp_path / "process0.log").read_text()
  one, two = saved_state(tmp_path / "single"), saved_state(tmp_path / "multi")
  assert_trees_equal(one["params"], two["params"], atol=1e-5)
  assert_trees_equal(one["model_state"], two["model_state"], atol=1e-5)
  single_rows, multi_rows = train_rows(tmp_path / "single"), train_rows(tmp_path / "multi")
  np.testing.assert_allclose(single_rows[10]["train/loss"], multi_rows[10]["train/loss"], rtol=1e-5)
