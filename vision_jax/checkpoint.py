"""Orbax checkpoints of the train state and the data-iterator position.

Each step directory holds two items: `state` (params, optimizer state, model
state such as BatchNorm statistics, step, rng; saved sharded) and `data` (the
Grain iterator state as JSON, identical on every process). Saves are async and
atomic (Orbax writes a temporary directory and renames it once complete), so a
kill mid-save leaves the previous checkpoint as the newest good one.

Resume order (`restore_or_init`): newest readable checkpoint in the workdir,
else `config.resume`, else the `config.init_from` subtree, else scratch.
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

from vision_jax import files
from vision_jax.sharding import path_name

CHECKPOINT_DIR = "checkpoints"
CORRUPT_DIR = "checkpoints_unreadable"


def abstract_tree(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the shardings the restored arrays should have."""
  return jax.tree.map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                      shapes, shardings)


def _restore_args(abstract_state) -> ocp.args.Composite:
  return ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                            data=ocp.args.JsonRestore())


class Checkpointer:
  """Keeps the newest `keep` checkpoints of a run under `workdir/checkpoints`."""

  def __init__(self, workdir: str, keep: int, async_save: bool = True):
    self.directory = os.path.join(files.absolute(workdir), CHECKPOINT_DIR)
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
    """(state, data_state, step) of the newest checkpoint that restores.

    A checkpoint that fails to restore (truncated or corrupted files) is
    reported, moved to `checkpoints_unreadable/` and skipped in favour of the
    one before it.
    """
    for step in reversed(self.all_steps()):
      try:
        restored = self._manager.restore(step, args=_restore_args(abstract_state))
      except Exception as e:  # pylint: disable=broad-except
        moved = self._set_aside(step)
        logging.warning("Checkpoint at step %d in %s cannot be restored (%s: %s); moved to %s, "
                        "falling back to the previous one.", step, self.directory,
                        type(e).__name__, e, moved)
        continue
      return restored.state, restored.data, step
    return None

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


def restore_step_dir(path: str, abstract_state) -> tuple[Any, dict]:
  """(state, data_state) from one step directory, e.g. `.../checkpoints/1000`."""
  path = epath.Path(path)
  if not (path / "state").exists():
    raise FileNotFoundError(f"{path} is not a checkpoint step directory (no 'state' item).")
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as ckptr:
    restored = ckptr.restore(path, args=_restore_args(abstract_state))
  return restored.state, restored.data


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


def read_weights(path: str) -> Any:
  """A checkpoint step directory's state, or a reference framework's weights
  file (.pth/.safetensors, converted by `vision_jax.convert` into
  {"params": ...} in this library's layout)."""
  if os.path.isfile(path):
    from vision_jax import convert  # Lazy: only runs that import weights need it.
    return convert.load_pretrained(path)
  return read_state(path)


def _subtree(tree: Any, path: str) -> Any:
  for part in filter(None, path.split("/")):
    if not isinstance(tree, dict) or part not in tree:
      keys = sorted(tree) if isinstance(tree, dict) else []
      raise KeyError(f"No subtree {path!r} in the checkpoint (at {part!r}; keys: {keys}).")
    tree = tree[part]
  return tree


def load_partial(path: str, subtree: str, target: str | None, state: dict) -> tuple[dict, dict]:
  """Copies arrays under `subtree` of saved weights into `state` at `target`.

  `path` is a checkpoint step directory or a weights file (`read_weights`).

  Leaves are matched by their path below the subtree; a leaf loads when the
  shapes agree. Returns (new state, report) where report lists the 'loaded',
  'missing' (in state, not in checkpoint), 'unused' (in checkpoint, not in
  state), 'mismatched' (shape differs) and 'untouched' (same collection as
  `target`, outside it: e.g. a detection head left at its initialisation) paths.
  """
  saved = read_weights(path)
  source = {path_name(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(_subtree(saved, subtree))}
  target = (target or subtree).strip("/")
  report = {"loaded": [], "missing": [], "mismatched": [], "unused": [], "untouched": []}
  used = set()
  collection = target.split("/")[0] + "/"

  def load(p, leaf):
    name = path_name(p)
    if not (name == target or name.startswith(target + "/")):
      if name.startswith(collection):
        report["untouched"].append(name)
      return leaf
    key = name[len(target):].lstrip("/")
    if key not in source:
      report["missing"].append(name)
      return leaf
    used.add(key)
    if source[key].shape != leaf.shape:
      report["mismatched"].append(f"{name}: {source[key].shape} vs {leaf.shape}")
      return leaf
    report["loaded"].append(name)
    return jax.device_put(source[key].astype(leaf.dtype), leaf.sharding)

  new_state = jax.tree_util.tree_map_with_path(load, state)
  report["unused"] = sorted(set(source) - used)
  if not report["loaded"]:
    raise ValueError(f"init_from {path}: nothing under {subtree!r} matches {target!r} "
                     f"in the model ({len(report['missing'])} missing, "
                     f"{len(report['mismatched'])} mismatched).")
  return new_state, report
