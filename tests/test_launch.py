"""launch/: the exact commands each script prints with --dry-run, and a real
two-process run of the digits demo through local_multiprocess.sh."""
import os
import pathlib
import shlex
import socket
import subprocess
import sys

import numpy as np
import pytest

from vision_jax import config as config_lib
from test_processes import train_rows
from test_train import assert_trees_equal, saved_state
from tiny_config import tiny_config

ROOT = pathlib.Path(__file__).parent.parent
LAUNCH = ROOT / "launch"
ODD_FLAG = "--config.data.data_dir=/data/it's here"  # Quotes and spaces survive the round trip.


def run_script(name, *args, env=None, check=True):
  base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
  proc = subprocess.run(["bash", str(LAUNCH / name), *args], env={**base, **(env or {})},
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
  if check:
    assert proc.returncode == 0, proc.stderr
  return proc


def dry_run(name, *args, env=None) -> list[list[str]]:
  """The printed commands, each split as a shell would; comment lines dropped."""
  out = run_script(name, "--dry-run", *args, env=env).stdout
  return [shlex.split(line) for line in out.splitlines() if not line.startswith("#")]


def main_command(config, workdir, *flags, python="python3"):
  return [python, "-m", "vision_jax.main", f"--config={config}", f"--workdir={workdir}", *flags]


def test_local_multiprocess_dry_run():
  lines = dry_run("local_multiprocess.sh", "2", "configs/resnet/digits.py:demo", "/tmp/multi/",
                  ODD_FLAG, env={"PORT": "4321", "DEVICES_PER_PROCESS": "4"})
  assert lines == [
      ["env", "XLA_FLAGS=--xla_force_host_platform_device_count=4", "JAX_PLATFORMS=cpu",
       *main_command("configs/resnet/digits.py:demo", "/tmp/multi",
                     "--config.distributed.coordinator_address=127.0.0.1:4321",
                     "--config.distributed.num_processes=2",
                     f"--config.distributed.process_id={i}", ODD_FLAG),
       ">", f"/tmp/multi.process{i}.log", "2>&1", "&"] for i in range(2)]


def test_slurm_dry_run_submits_itself_then_runs_srun():
  lines = dry_run("slurm_gpu.sh", "configs/pvt_coco.py:variant=small", "/shared/pvt", ODD_FLAG,
                  env={"NODES": "4", "PARTITION": "gpu"})
  sbatch, srun = lines
  assert sbatch[:7] == ["sbatch", "--job-name=vision_jax", "--nodes=4", "--ntasks-per-node=1",
                        "--gpus-per-node=8", "--time=24:00:00", "--output=/shared/pvt.slurm-%j.log"]
  assert sbatch[7] == "--partition=gpu" and sbatch[8].startswith("--wrap=")
  assert shlex.split(sbatch[8][len("--wrap="):]) == [
      "bash", str(LAUNCH / "slurm_gpu.sh"), "configs/pvt_coco.py:variant=small", "/shared/pvt",
      ODD_FLAG]
  assert srun == ["srun", "--kill-on-bad-exit=1", "--ntasks-per-node=1",
                  *main_command("configs/pvt_coco.py:variant=small", "/shared/pvt",
                                "--config.distributed.enabled=True",
                                "--config.distributed.local_device_ids=0,1,2,3,4,5,6,7", ODD_FLAG)]


def test_slurm_inside_the_job_one_process_per_gpu():
  lines = dry_run("slurm_gpu.sh", "configs/pvt_coco.py", "/w",
                  env={"SLURM_JOB_ID": "7", "PER": "gpu", "GPUS_PER_NODE": "4"})
  assert lines == [["srun", "--kill-on-bad-exit=1", "--ntasks-per-node=4",
                    *main_command("configs/pvt_coco.py", "/w", "--config.distributed.enabled=True")]]


def test_slurm_device_ids_flag_is_a_valid_config_value():
  config_lib.validate(tiny_config(**{"distributed.local_device_ids": "0,1,2,3,4,5,6,7"}))
  with pytest.raises(config_lib.ConfigError, match="'distributed.local_device_ids' must be"):
    config_lib.validate(tiny_config(**{"distributed.local_device_ids": "0-7"}))


def test_tpu_pod_dry_runs():
  pod = ["my-pod", "us-central2-b"]
  zone = "--zone=us-central2-b"
  gcloud = ["gcloud", "compute", "tpus", "tpu-vm"]
  assert dry_run("tpu_pod.sh", "create", *pod, "v5p-64") == [
      [*gcloud, "create", "my-pod", zone, "--accelerator-type=v5p-64",
       "--version=tpu-ubuntu2204-base"]]
  archive, scp, install = dry_run("tpu_pod.sh", "setup", *pod, env={"PROJECT": "p"})
  assert archive == ["git", "-C", str(ROOT), "archive", "--format=tar.gz", "-o",
                     "/tmp/vision_jax_src.tar.gz", "HEAD"]
  assert scp == [*gcloud, "scp", "/tmp/vision_jax_src.tar.gz", "my-pod:vision_jax_src.tar.gz",
                 zone, "--project=p", "--worker=all"]
  assert install[:9] == [*gcloud, "ssh", "my-pod", zone, "--project=p", "--worker=all"]
  assert "pip install -q -e '.[tpu]'" in install[-1]
  (run,) = dry_run("tpu_pod.sh", "run", *pod, "configs/pvt_coco.py:variant=small", "gs://b/pvt",
                   ODD_FLAG)
  assert run[:8] == [*gcloud, "ssh", "my-pod", zone, "--worker=all"]
  command = run[8]
  assert command.startswith("--command=")
  assert shlex.split(command[len("--command="):]) == [
      "cd", "vision_jax", "&&",
      *main_command("configs/pvt_coco.py:variant=small", "gs://b/pvt",
                    "--config.distributed.enabled=True", ODD_FLAG)]
  assert dry_run("tpu_pod.sh", "delete", *pod) == [[*gcloud, "delete", "my-pod", zone, "--quiet"]]


@pytest.mark.parametrize("script, args, message", [
    ("tpu_pod.sh", ["run", "pod", "zone", "configs/pvt_coco.py", "/local/dir"],
     "WORKDIR must be a gs:// path every host reaches, got '/local/dir'."),
    ("tpu_pod.sh", ["start", "pod", "zone"], "Unknown action 'start'"),
    ("local_multiprocess.sh", ["two", "configs/x.py", "/w"], "N must be a positive integer"),
    ("slurm_gpu.sh", ["configs/x.py"], "slurm_gpu.sh [--dry-run] CONFIG"),
])
def test_bad_arguments_exit_2_with_a_message(script, args, message):
  proc = run_script(script, "--dry-run", *args, check=False)
  assert proc.returncode == 2 and message in proc.stderr and not proc.stdout


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_local_processes_train_the_digits_demo_like_one(tmp_path):
  flags = ["--config.total_epochs=1", "--config.log_every_steps=1"]
  env = {**os.environ, "PYTHON": sys.executable, "PORT": str(_free_port())}
  multi = subprocess.run(["bash", str(LAUNCH / "local_multiprocess.sh"), "2",
                          "configs/resnet/digits.py:demo", str(tmp_path / "multi"), *flags],
                         env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
  logs = "".join(p.read_text() for p in sorted(tmp_path.glob("multi.process*.log")))
  assert multi.returncode == 0, logs[-3000:]
  assert "mesh {'data': 4, 'fsdp': 1, 'model': 1}" in logs
  single = subprocess.run([*main_command("configs/resnet/digits.py:demo", tmp_path / "single",
                                         *flags, python=sys.executable)],
                          env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
  assert single.returncode == 0, single.stderr[-3000:]
  one, two = train_rows(tmp_path / "single"), train_rows(tmp_path / "multi")
  assert sorted(one) == sorted(two) == list(range(1, 12))  # 1,438 digits // 128: 11 steps.
  for step in one:
    np.testing.assert_allclose(two[step]["train/loss"], one[step]["train/loss"], rtol=1e-5)
  assert one[11]["train/loss"] < one[1]["train/loss"]
  assert_trees_equal(saved_state(tmp_path / "single")["params"],
                     saved_state(tmp_path / "multi")["params"], atol=1e-5)
