"""A PyTorch state dict -> Flax variables by a key mapping, strictly.

A family's converter reads the architecture from the keys and builds a
mapping {torch key: (collection, Flax path, transform)}; `apply_mapping`
checks it against the state dict (every tensor used, none missing) and
against the model's variable shapes (every variable filled, each shape
equal), and raises a ConversionError listing what does not fit.
"""
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.convert import ConversionError

SKIPPED_SUFFIX = ".num_batches_tracked"  # BatchNorm's counter: no Flax counterpart.
# torch BatchNorm / LayerNorm tensor -> (collection, Flax leaf).
BATCH_NORM = {"weight": ("params", "scale"), "bias": ("params", "bias"),
              "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}
LAYER_NORM = {"weight": ("params", "scale"), "bias": ("params", "bias")}
Mapping_ = dict[str, tuple[str, tuple[str, ...], Callable]]


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  """A torch conv kernel [out, in/groups, kh, kw] -> Flax's [kh, kw, in/groups, out]."""
  return np.transpose(w, (2, 3, 1, 0))


def linear_to_dense(w: np.ndarray) -> np.ndarray:
  """A torch Linear weight [out, in] -> a Dense kernel [in, out]."""
  return np.transpose(w)


def same(w: np.ndarray) -> np.ndarray:
  return w


def add_conv(mapping: Mapping_, torch_name: str, path: tuple[str, ...], bias: bool = False) -> None:
  """`torch_name`.weight (and .bias) -> params `path`/kernel (and bias)."""
  mapping[f"{torch_name}.weight"] = ("params", path + ("kernel",), oihw_to_hwio)
  if bias:
    mapping[f"{torch_name}.bias"] = ("params", path + ("bias",), same)


def add_linear(mapping: Mapping_, torch_name: str, path: tuple[str, ...]) -> None:
  """`torch_name`.weight / .bias -> params `path`/kernel / bias."""
  mapping[f"{torch_name}.weight"] = ("params", path + ("kernel",), linear_to_dense)
  mapping[f"{torch_name}.bias"] = ("params", path + ("bias",), same)


def add_norm(mapping: Mapping_, torch_name: str, path: tuple[str, ...],
             tensors: Mapping[str, tuple[str, str]] = BATCH_NORM) -> None:
  """A norm's tensors (BATCH_NORM or LAYER_NORM) -> `path`/scale, bias (and mean, var)."""
  for suffix, (collection, leaf) in tensors.items():
    mapping[f"{torch_name}.{suffix}"] = (collection, path + (leaf,), same)


def variable_shapes(model, input_shape: tuple[int, ...]) -> dict[tuple, tuple]:
  """{(collection, *path): shape} of `model`'s variables for one input (no compute)."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(input_shape)))
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {tuple(p.key for p in path): tuple(leaf.shape) for path, leaf in flat}


def without_skipped(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The state dict as numpy arrays, BatchNorm's num_batches_tracked left out."""
  return {k: np.asarray(v) for k, v in state_dict.items() if not k.endswith(SKIPPED_SUFFIX)}


def apply_mapping(state_dict: Mapping[str, np.ndarray], mapping: Mapping_,
                  expected: dict[tuple, tuple], what: str) -> dict:
  """{collection: nested variables} from `state_dict` by `mapping`, checked
  against the `expected` variable shapes; `what` names the model in errors."""
  missing = sorted(set(mapping) - set(state_dict))
  unused = sorted(set(state_dict) - set(mapping))
  if missing or unused:
    raise ConversionError(f"{what}: {len(missing)} missing keys {missing[:8]}; "
                          f"{len(unused)} unused keys {unused[:8]}.")
  expected, variables, errors = dict(expected), {}, []
  for key, (collection, path, fn) in mapping.items():
    value = np.asarray(fn(state_dict[key]), np.float32)
    want = expected.pop((collection, *path), None)
    if want is None:
      errors.append(f"{key} -> {collection}/{'/'.join(path)} is no model variable")
    elif value.shape != want:
      errors.append(f"{key}: converted shape {value.shape} != {'/'.join(path)} {want}")
    node = variables.setdefault(collection, {})
    for part in path[:-1]:
      node = node.setdefault(part, {})
    node[path[-1]] = value
  errors += [f"variable {'/'.join(p)} not filled" for p in sorted(expected)]
  if errors:
    raise ConversionError(f"{what} conversion failed: " + "; ".join(errors[:8]))
  return variables
