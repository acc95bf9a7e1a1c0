"""A brief end-to-end run of an experiment config for tests: one device (the
sharded trainer is tested elsewhere), data and workdir under tmp_path, one
evaluation at the end."""
import os

from vision_jax import metrics, train


def brief_run(c, tmp_path, total_steps: int, log_every_steps: int):
  """Trains `c` for `total_steps`; returns (final result, logged train rows, workdir)."""
  c.data.data_dir = str(tmp_path / "data")
  c.mesh.data = 1
  c.total_steps, c.log_every_steps, c.eval_every_steps = total_steps, log_every_steps, None
  workdir = os.path.join(str(tmp_path), "run")
  result = train.run(c, workdir)
  rows = [r for r in metrics.read_metrics(workdir) if "train/loss" in r]
  return result, rows, workdir
