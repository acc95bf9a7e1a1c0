"""What went wrong with a checkpoint: unreadable, unmatched, or unreachable.

A restore can fail for three different reasons, and each asks for a different
response (`checkpoint.Checkpointer.restore_newest`):

- the step's files cannot be read or decoded (truncated or overwritten data, a
  missing item, bad JSON): the step is *corrupt*; it is set aside and the one
  before it is tried;
- the files read fine but hold another train state than the config builds
  (tree structure, shape or dtype): a *mismatch*; the run stops with a
  `ConfigError` naming the first differing leaves and nothing is moved;
- the storage did not answer (a network error of a remote workdir, a timeout,
  a permission problem): *transient*; the read is retried, then the run stops,
  and nothing is moved.

Anything not recognised as corruption counts as not corrupt: a checkpoint is
only ever set aside for a failure that says its bytes are bad.
"""
import json
import re
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np

from vision_jax.errors import ConfigError
from vision_jax.sharding import path_name

CORRUPT, TRANSIENT, OTHER = "corrupt", "transient", "other"
# Status codes TensorStore (Orbax's array store) puts at the start of its errors.
_CORRUPT_STATUSES = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND")
_TRANSIENT_STATUSES = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED",
                       "CANCELLED", "PERMISSION_DENIED", "UNAUTHENTICATED")
_STATUS = re.compile(r"^([A-Z_]+): ")


class CheckpointReadError(OSError):
  """A checkpoint could not be read for a reason that is not its own fault
  (storage unreachable, permissions); nothing was set aside."""


def failure_kind(error: BaseException) -> str:
  """CORRUPT, TRANSIENT or OTHER for an exception raised while reading a step."""
  if isinstance(error, (ConnectionError, TimeoutError)):
    return TRANSIENT
  match = _STATUS.match(str(error)) if isinstance(error, ValueError) else None
  status = match.group(1) if match else None
  if status in _TRANSIENT_STATUSES:
    return TRANSIENT
  if status in _CORRUPT_STATUSES or isinstance(error, (json.JSONDecodeError, EOFError,
                                                       FileNotFoundError)):
    return CORRUPT
  if isinstance(error, KeyError) and "was not found in the checkpoint" in str(error):
    return CORRUPT  # Orbax: an item of the step (state, data) is missing.
  if isinstance(error, OSError):
    return TRANSIENT
  return OTHER


def with_retries(read: Callable[[], Any], delays: Sequence[float], what: str) -> Any:
  """`read()`, retried after each of `delays` (seconds) while it fails transiently;
  a transient failure that outlasts them raises CheckpointReadError. Other
  failures propagate at once."""
  for attempt in range(len(delays) + 1):
    try:
      return read()
    except Exception as e:  # pylint: disable=broad-except
      if failure_kind(e) != TRANSIENT:
        raise
      if attempt == len(delays):
        raise CheckpointReadError(
            f"Could not read {what} after {attempt + 1} attempts (last error: "
            f"{type(e).__name__}: {e}). Nothing was set aside; run again once the storage "
            "answers.") from e
      time.sleep(delays[attempt])
  raise AssertionError("unreachable")


def leaf_specs(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """'/'-joined path -> (shape, dtype name) of every array leaf (arrays, abstract
  arrays or Orbax array metadata)."""
  return {path_name(p): (tuple(int(d) for d in leaf.shape), np.dtype(leaf.dtype).name)
          for p, leaf in jax.tree_util.tree_leaves_with_path(tree) if hasattr(leaf, "shape")}


def differences(saved: Mapping[str, tuple], expected: Mapping[str, tuple]) -> list[str]:
  """Readable lines for every leaf that differs (parameters first, then by
  path): shape/dtype changes, then leaves only in the checkpoint, then only in
  the config."""
  ordered = lambda keys: sorted(keys, key=lambda k: (not k.startswith("params/"), k))
  changed = [f"{k}: saved {_spec(saved[k])} vs expected {_spec(expected[k])}"
             for k in ordered(set(saved) & set(expected)) if saved[k] != expected[k]]
  only_saved = [f"{k}: saved {_spec(saved[k])}, not in this config's state"
                for k in ordered(set(saved) - set(expected))]
  only_expected = [f"{k}: expected {_spec(expected[k])}, not in the checkpoint"
                   for k in ordered(set(expected) - set(saved))]
  return changed + only_saved + only_expected


def _spec(spec: tuple) -> str:
  shape, dtype = spec
  return f"{shape} {dtype}"


def mismatch_error(where: str, lines: list[str], limit: int = 6) -> ConfigError:
  """The ConfigError for a readable checkpoint that is not this config's state."""
  shown = "\n  ".join(lines[:limit])
  more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
  return ConfigError(
      f"The checkpoint {where} holds another train state than this config builds "
      f"({len(lines)} leaves differ):\n  {shown}{more}\n"
      "Nothing was restored or moved. To continue that run, use the config it was saved with "
      "(config.json in its workdir). To train this config, give it another --workdir; to start "
      f"it from these weights, also set config.init_from.path to the step directory "
      "(config.init_from.strict=False loads only the leaves that match).")


def readable_specs(saved_tree: Any) -> dict[str, tuple] | None:
  """`leaf_specs` of a saved metadata tree, or None when it has no array
  metadata at all: Orbax returns None for a step whose array store it could
  not read (a truncated data file), and only the restore itself can then tell
  corruption from a storage error. (Empty optimizer-state nodes are saved as
  None leaves; they hold no arrays on either side.)"""
  specs = leaf_specs(saved_tree) if saved_tree is not None else {}
  return specs or None


def check_matches(saved_tree: Any, abstract_state: Any, where: str) -> None:
  """Raises `mismatch_error` unless the saved tree has the state's leaves, shapes
  and dtypes; does nothing when the saved metadata is unreadable (the restore
  that follows then fails and says why)."""
  saved = readable_specs(saved_tree)
  if saved is None:
    return
  lines = differences(saved, leaf_specs(abstract_state))
  if lines:
    raise mismatch_error(where, lines)
