"""`config.init_from`: start a run from (part of) other weights.

The source is a checkpoint step directory of this library or a reference
framework's weights file (.pth/.safetensors), converted by the family of the
model part at the target (`vision_jax.convert`; e.g. a ResNet's for
params/backbone of a RetinaNet-R50) into this library's layout, BatchNorm
statistics included. A subtree of it is copied into the fresh train state at
a target path, leaf by leaf, matched by the path below the subtree.
`load_teacher` reads the frozen models of `config.teachers` the same way.

Strict by default: every leaf of the target subtree must be filled by a
source leaf of the same shape, and every source leaf must be used, except
those the converter marks droppable (a classifier's head and final norm when
the target is a detection backbone). `strict=False` loads whatever matches
and reports the rest; it still fails when nothing loads.
"""
import os
from typing import Any
import jax
import numpy as np

from vision_jax import checkpoint, convert
from vision_jax.errors import ConfigError
from vision_jax.models import features
from vision_jax.sharding import path_name

_SHOWN = 8  # Paths listed per kind in errors and log lines.


def read_weights(path: str, model=None, target: str = "params") -> convert.Weights:
  """A checkpoint step directory's train state (nothing droppable), or a
  weights file converted by the family of the model part at `target`
  ("params/backbone": `model`'s backbone), laid out as a train state:
  {"params": ..., "model_state": {"batch_stats": ...}}."""
  if not os.path.isfile(path):
    return convert.Weights(checkpoint.read_state(path))
  if model is None:
    raise ValueError(f"Converting the weights file {path} needs the model it is for.")
  part = features.resolve(model, target.split("/", 1)[1] if "/" in target else "")
  weights = convert.load(path, part)
  variables = dict(weights.variables)
  tree = {"params": variables.pop("params"), "model_state": variables}
  droppable = tuple(p if p.startswith("params/") else f"model_state/{p}" for p in weights.droppable)
  return convert.Weights(tree, droppable)


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


def _pairs(tree: dict, subtree: str, target: str, is_file: bool) -> list[tuple[str, str]]:
  """(source subtree, target) pairs: the configured one and, for a weights
  file loaded into parameters, each of its other collections (BatchNorm
  statistics) at the same place below model_state/<collection>."""
  pairs = [(subtree.strip("/"), target)]
  sub, tgt = subtree.strip("/"), target
  if is_file and sub.split("/")[0] == "params" and tgt.split("/")[0] == "params":
    for collection in sorted(tree.get("model_state") or {}):
      pairs.append((f"model_state/{collection}{sub[len('params'):]}",
                    f"model_state/{collection}{tgt[len('params'):]}"))
  return pairs


def load_partial(path: str, subtree: str, target: str | None, state: dict,
                 strict: bool = True, model=None, what: str | None = None) -> tuple[dict, dict]:
  """Copies the arrays under `subtree` of the weights at `path` into `state` at `target`.

  A weights file is converted for the part of `model` at `target` and its
  other collections (BatchNorm statistics) go to model_state alike. Returns
  (new state, report): 'loaded', 'missing' (in the target, not in the
  source), 'mismatched' (shapes differ), 'unused' (in the source, not in the
  target), 'dropped' (unused and marked droppable) and 'untouched' (same
  collection as `target`, outside it: e.g. a detection head left at its
  initialisation) paths. With `strict`, any missing, mismatched or unused
  (not droppable) leaf raises ConfigError listing them; nothing is loaded then.
  `what` names the load in errors (default: the init_from source and paths).
  """
  target = (target or subtree).strip("/")
  weights = read_weights(path, model, target)
  report = {"loaded": [], "missing": [], "mismatched": [], "unused": [], "dropped": [],
            "untouched": []}
  new_state = state
  for source_path, target_path in _pairs(weights.variables, subtree, target, os.path.isfile(path)):
    new_state = _load_one(weights, source_path, target_path, new_state, report)
  hint = ("Check that the weights are of the same model size (e.g. pvt_small.pth for "
          "variant=small), or set config.init_from.strict=False to load only the leaves that "
          "match." if what is None else "")
  what = what or f"init_from {path} [{subtree}] -> [{target}]"
  if strict and (report["missing"] or report["mismatched"] or report["unused"]):
    parts = [f"{len(report[k])} {k}: {listed(report[k])}"
             for k in ("missing", "mismatched", "unused") if report[k]]
    raise ConfigError(f"{what} does not fit the model: " + "; ".join(parts) + "." +
                      (f" {hint}" if hint else ""))
  if not report["loaded"]:
    raise ConfigError(f"{what}: nothing under {subtree!r} matches {target!r} in the model "
                      f"({len(report['missing'])} missing, {len(report['mismatched'])} "
                      "mismatched).")
  return new_state, report


def _load_one(weights: convert.Weights, subtree: str, target: str, state: dict,
              report: dict) -> dict:
  """One (source subtree -> target) copy; appends to `report`."""
  source = {path_name(p): np.asarray(v)
            for p, v in jax.tree_util.tree_leaves_with_path(_subtree(weights.variables, subtree))}
  droppable = _relative(weights.droppable, subtree)
  used = set()
  collection = target.split("/")[0] + "/"

  def load(p, leaf):
    name = path_name(p)
    if not (name == target or name.startswith(target + "/")):
      if name.startswith(collection) and not name.startswith("model_state/"):
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
  report["dropped"] += [k for k in leftover if _is_under(k, droppable)]
  report["unused"] += [k for k in leftover if not _is_under(k, droppable)]
  return new_state


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


def load_teacher(model, path: str, inputs: tuple, sharding, name: str = "teacher") -> Any:
  """The frozen `model` with every variable from `path` (a checkpoint step
  directory's params and model state, or a weights file of the model's
  family), strictly: ConfigError naming what does not fit. Variables are
  placed with `sharding`."""
  from vision_jax.tasks.base import Teacher  # pylint: disable=import-outside-toplevel
  abstract = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), *[jax.numpy.zeros((1, *x.shape), x.dtype) for x in inputs],
      train=False))
  state = {"params": abstract["params"],
           "model_state": {k: v for k, v in abstract.items() if k != "params"}}
  zeros = jax.tree.map(lambda x: jax.device_put(np.zeros(x.shape, x.dtype), sharding), state)
  what = f"config.teachers.{name}: {path} ({type(model).__name__})"
  loaded, _ = load_partial(path, "params", "params", zeros, strict=True, model=model, what=what)
  if not os.path.isfile(path) and loaded["model_state"]:
    loaded, _ = load_partial(path, "model_state", "model_state", loaded, strict=True, what=what)
  return Teacher(model, {"params": loaded["params"], **loaded["model_state"]})
