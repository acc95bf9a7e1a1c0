"""`config.init_from`: start a run from (part of) other weights.

The source is a checkpoint step directory of this library or a reference
framework's weights file (.pth/.safetensors, converted by `vision_jax.convert`
into {"params": ...} in this library's layout). A subtree of it is copied into
the fresh train state at a target path, leaf by leaf, matched by the path
below the subtree.

Strict by default: every leaf of the target subtree must be filled by a
source leaf of the same shape, and every source leaf must be used, except
those the converter marks droppable (a classifier's head and final norm when
the target is a detection backbone). `strict=False` loads whatever matches
and reports the rest; it still fails when nothing loads.
"""
import dataclasses
import os
from typing import Any

import jax
import numpy as np

from vision_jax import checkpoint
from vision_jax.errors import ConfigError
from vision_jax.sharding import path_name

_SHOWN = 8  # Paths listed per kind in errors and log lines.


@dataclasses.dataclass(frozen=True)
class Weights:
  """A tree of saved arrays and the '/'-joined path prefixes of its leaves a
  target may leave unused."""
  tree: Any
  droppable: tuple[str, ...] = ()


def read_weights(path: str) -> Weights:
  """A checkpoint step directory's train state (nothing droppable), or a
  weights file converted to this library's layout."""
  if os.path.isfile(path):
    from vision_jax import convert  # Lazy: only runs that import weights need it.
    tree, droppable = convert.load_pretrained_for_init(path)
    return Weights(tree, tuple(droppable))
  return Weights(checkpoint.read_state(path))


def _subtree(tree: Any, path: str) -> Any:
  for part in filter(None, path.split("/")):
    if not isinstance(tree, dict) or part not in tree:
      keys = sorted(tree) if isinstance(tree, dict) else []
      raise KeyError(f"No subtree {path!r} in the checkpoint (at {part!r}; keys: {keys}).")
    tree = tree[part]
  return tree


def _relative(prefixes: tuple[str, ...], subtree: str) -> tuple[str, ...]:
  """Droppable prefixes of the whole tree, as paths below `subtree`."""
  root = subtree.strip("/")
  return tuple(p[len(root):].lstrip("/") if root else p for p in prefixes
               if not root or p == root or p.startswith(root + "/"))


def _is_under(key: str, prefixes: tuple[str, ...]) -> bool:
  return any(key == p or key.startswith(p + "/") for p in prefixes)


def listed(paths: list[str], limit: int = _SHOWN) -> str:
  """'a, b, c (and 5 more)'."""
  more = f" (and {len(paths) - limit} more)" if len(paths) > limit else ""
  return ", ".join(paths[:limit]) + more


def load_partial(path: str, subtree: str, target: str | None, state: dict,
                 strict: bool = True) -> tuple[dict, dict]:
  """Copies the arrays under `subtree` of the weights at `path` into `state` at `target`.

  Returns (new state, report): 'loaded', 'missing' (in the target, not in the
  source), 'mismatched' (shapes differ), 'unused' (in the source, not in the
  target), 'dropped' (unused and marked droppable) and 'untouched' (same
  collection as `target`, outside it: e.g. a detection head left at its
  initialisation) paths. With `strict`, any missing, mismatched or unused
  (not droppable) leaf raises ConfigError listing them; nothing is loaded then.
  """
  weights = read_weights(path)
  source = {path_name(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(_subtree(weights.tree, subtree))}
  droppable = _relative(weights.droppable, subtree)
  target = (target or subtree).strip("/")
  report = {"loaded": [], "missing": [], "mismatched": [], "unused": [], "dropped": [],
            "untouched": []}
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
  leftover = sorted(set(source) - used)
  report["dropped"] = [k for k in leftover if _is_under(k, droppable)]
  report["unused"] = [k for k in leftover if not _is_under(k, droppable)]
  what = f"init_from {path} [{subtree}] -> [{target}]"
  if strict and (report["missing"] or report["mismatched"] or report["unused"]):
    parts = [f"{len(report[k])} {k}: {listed(report[k])}"
             for k in ("missing", "mismatched", "unused") if report[k]]
    raise ConfigError(
        f"{what} does not fit the model: " + "; ".join(parts) + ". Check that the weights "
        "are of the same model size (e.g. pvt_small.pth for variant=small), or set "
        "config.init_from.strict=False to load only the leaves that match.")
  if not report["loaded"]:
    raise ConfigError(f"{what}: nothing under {subtree!r} matches {target!r} in the model "
                      f"({len(report['missing'])} missing, {len(report['mismatched'])} "
                      "mismatched).")
  return new_state, report


def summary(report: dict) -> str:
  """The log line of a load: counts, and the first paths of each kind."""
  untouched = sorted({"/".join(p.split("/")[:2]) for p in report["untouched"]})
  parts = [f"loaded {len(report['loaded'])}"]
  for kind in ("missing", "mismatched", "unused", "dropped"):
    if report[kind]:
      parts.append(f"{kind} {len(report[kind])} [{listed(report[kind])}]")
  parts.append(f"kept from initialisation outside the target: {len(report['untouched'])} "
               f"{untouched}")
  return ", ".join(parts)
