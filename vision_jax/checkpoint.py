"""Orbax checkpoints of the train state and the data-iterator position.

Each step directory holds two items: `state` (params, optimizer state, model
state such as BatchNorm statistics, step, rng; saved sharded) and `data` (the
Grain iterator state as JSON, identical on every process). Saves are async and
atomic (Orbax writes a temporary directory and renames it once complete), so a
kill mid-save leaves the previous checkpoint as the newest good one.

Resume order (`train._restore_or_init`): newest checkpoint in the workdir,
else `config.resume`, else the `config.init_from` subtree, else scratch.
Before any array is read, a step's saved tree is compared with the state the
config builds; only a step whose files cannot be read or decoded is ever set
aside (`checkpoint_checks`).
"""
import contextlib
import logging as pylogging
import os
import time
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from vision_jax import checkpoint_checks as checks
from vision_jax import files

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_unreadable"
# Seconds to wait before each retry of a read that failed transiently.
RETRY_DELAYS = (1.0, 4.0, 16.0)
# A step's outcome on one process; processes agree on the worst (largest).
_OK, _CORRUPT, _STOP = 0, 1, 2


def abstract_tree(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the shardings the restored arrays should have."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)


def _restore_args(abstract_state) -> ocp.args.Composite:
  return ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                            data=ocp.args.JsonRestore())


class Checkpointer:
  """Keeps the newest `keep` checkpoints of a run under `workdir/checkpoints`."""

  def __init__(self, workdir: str, keep: int, async_save: bool = True,
               retry_delays: tuple[float, ...] = RETRY_DELAYS):
    self.directory = os.path.join(files.absolute(workdir), CHECKPOINT_DIR)
    self.retry_delays = tuple(retry_delays)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                             enable_async_checkpointing=async_save))

  def all_steps(self) -> list[int]:
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state)), force=True)

  def restore_newest(self, abstract_state) -> tuple[Any, dict, int] | None:
    """(state, data_state, step) of the newest checkpoint, or None if there is none.

    Newest first: a step whose files cannot be read or decoded is moved to
    `checkpoints_unreadable/` and the one before it is tried. A step that reads
    but holds another train state than `abstract_state` raises ConfigError
    (nothing moved); storage that does not answer is retried, then raises
    CheckpointReadError (nothing moved). With several processes each step's
    outcome is agreed on by all of them, so they restore the same step or stop
    together.
    """
    while True:
      step = self._agreed_newest_step()
      if step is None:
        return None
      outcome, result, error = self._try_restore(step, abstract_state)
      agreed = _agree(outcome)
      if agreed == _OK:
        return (*result, step)
      if agreed == _CORRUPT:
        moved = self._set_aside(step)
        logging.warning("Checkpoint at step %d in %s cannot be read (%s); moved to %s, "
                        "falling back to the previous one.", step, self.directory,
                        _describe(error) if error else "unreadable on another process", moved)
        continue
      if outcome == _STOP:
        raise error
      raise checks.CheckpointReadError(
          f"Another process could not restore checkpoint step {step} of {self.directory} "
          "(its log says why); stopping with it.")

  def _agreed_newest_step(self) -> int | None:
    """Process 0's newest step (the same on every process), or None."""
    steps = self.all_steps()
    newest = steps[-1] if steps else -1
    if jax.process_count() > 1:
      newest = int(multihost_utils.broadcast_one_to_all(np.int64(newest)))
    return None if newest < 0 else newest

  def _try_restore(self, step: int, abstract_state) -> tuple[int, Any, BaseException | None]:
    """(outcome, (state, data) or None, the error to raise or report) of this process."""
    where = f"at step {step} in {self.directory}"
    step_dir = epath.Path(self.directory) / str(step)
    try:
      saved = checks.with_retries(lambda: _saved_metadata(step_dir), self.retry_delays,
                                  f"checkpoint {where}")
      checks.check_matches(saved, abstract_state, where)
      restored = checks.with_retries(
          lambda: self._manager.restore(step, args=_restore_args(abstract_state)),
          self.retry_delays, f"checkpoint {where}")
    except Exception as e:  # pylint: disable=broad-except
      return (_CORRUPT if checks.failure_kind(e) == checks.CORRUPT else _STOP), None, e
    return _OK, (restored.state, restored.data), None

  def _set_aside(self, step: int) -> str:
    """Moves an unreadable step out of the way (kept for inspection, not deleted)."""
    target = os.path.join(os.path.dirname(self.directory), CORRUPT_DIR, f"{step}-{time.time_ns()}")
    if jax.process_index() == 0:
      epath.Path(target).parent.mkdir(parents=True, exist_ok=True)
      epath.Path(self.directory, str(step)).rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f"set aside checkpoint {step}")
    self._manager.reload()
    return target

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()


def _describe(error: BaseException) -> str:
  return f"{type(error).__name__}: {error}"


def _agree(outcome: int) -> int:
  """The worst outcome over all processes (this one's alone when it is alone)."""
  if jax.process_count() == 1:
    return outcome
  return int(np.max(multihost_utils.process_allgather(np.int32(outcome))))


@contextlib.contextmanager
def _no_item_metadata_warning():
  """Mutes Orbax's warning that an item of a composite checkpoint has no
  checkpoint-level metadata file of its own (the step directory has it)."""
  absl_logger = pylogging.getLogger("absl")
  drop = lambda record: not record.getMessage().startswith("Metadata file does not exist")
  absl_logger.addFilter(drop)
  try:
    yield
  finally:
    absl_logger.removeFilter(drop)


def _saved_metadata(step_dir: epath.Path) -> Any:
  """The tree of array metadata (shape, dtype) of a step's `state` item; reads
  no array. A missing item raises FileNotFoundError."""
  item = step_dir / "state"
  if not item.exists():
    raise FileNotFoundError(f"{step_dir} has no 'state' item.")
  with _no_item_metadata_warning(), ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
    return ckptr.metadata(item).item_metadata


def restore_step_dir(path: str, abstract_state) -> tuple[Any, dict]:
  """(state, data_state) from one step directory, e.g. `.../checkpoints/1000`;
  a step of another train state raises ConfigError before any array is read."""
  path = epath.Path(path)
  if not (path / "state").exists():
    raise FileNotFoundError(f"{path} is not a checkpoint step directory (no 'state' item).")
  checks.check_matches(_saved_metadata(path), abstract_state, f"config.resume={path}")
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    restored = ckptr.restore(path, args=_restore_args(abstract_state))
  return restored.state, restored.data


def read_state(path: str) -> Any:
  """The `state` item of a step directory as host arrays on this process.

  Works whatever mesh or number of processes wrote it (pretrained weights
  from a pod, loaded on a workstation)."""
  item = epath.Path(path) / "state"
  if not item.exists():
    raise FileNotFoundError(f"{path} is not a checkpoint step directory (no 'state' item).")
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with _no_item_metadata_warning(), ocp.StandardCheckpointer() as ckptr:
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=local),
                          ckptr.metadata(item).item_metadata)
    return jax.tree.map(np.asarray, ckptr.restore(item, target))
