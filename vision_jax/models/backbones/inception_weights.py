"""timm Inception-v4 / Inception-ResNet-v2 state dicts -> `inception` variables.

Two layouts, told apart by their first conv:

timm `inception_v4` (`features` is one sequence of 3 + 3 + A + 1 + B + 1 + C modules):
  features.0 / .1 / .2                      -> stem_0 / stem_1 / stem_2
  features.3 / .4 / .5                      -> mixed_3a / mixed_4a / mixed_5a
  features.{6 ..}                           -> inception_a1 .., reduction_a, inception_b1 ..,
                                               reduction_b, inception_c1 ..
  last_linear                               -> head
timm `inception_resnet_v2`:
  conv2d_1a, conv2d_2a, conv2d_2b, conv2d_3b, conv2d_4a, mixed_5b, mixed_6a, mixed_7a,
  conv2d_7b                                 -> the same names
  repeat.{j} / repeat_1.{j} / repeat_2.{j}  -> block35_{j+1} / block17_{j+1} / block8_{j+1}
  block8                                    -> block8_last
  classif                                   -> head

Inside a block a sequence index joins with "_" (branch1.0 -> branch1_0; the
Inception-C convs branch1_0, branch2_0/1/2 keep
their names); every ConvNormAct is `<name>/conv`
(OIHW -> HWIO) and `<name>/bn` (weight / bias -> params scale / bias,
running_mean / running_var -> batch_stats mean / var; `num_batches_tracked`
is skipped); the residual projections `conv2d` keep their bias; the linear
head [out, in] -> [in, out]. The repeats and the number of classes are read
from the keys; then every variable of that model is looked up by its key:
a missing, unused or misshapen tensor is a ConversionError naming it.
"""
import re
from typing import Mapping

import numpy as np

from vision_jax.convert import ConversionError, Weights, mapping as mapping_lib
from vision_jax.models.backbones import inception as inception_lib

# A BatchNorm's Flax leaf (scale, bias, mean, var) -> its torch tensor name.
_BN_LEAVES = {leaf: suffix for suffix, (_, leaf) in mapping_lib.BATCH_NORM.items()}
# Inception-C's own attribute names that look like sequence positions.
_INCEPTION_C_ATTRIBUTES = ("branch1_0", "branch2_0", "branch2_1", "branch2_2")
_IRV2_REPEATS = {"block35_": "repeat", "block17_": "repeat_1", "block8_": "repeat_2"}


def infer_architecture(state_dict: Mapping[str, np.ndarray]) -> tuple[type, dict]:
  """(model class, constructor arguments) of the network the keys describe."""
  def count(pattern):
    return len({m[1] for k in state_dict for m in [re.match(pattern, k)] if m})

  if "features.0.conv.weight" in state_dict:
    cls, head = inception_lib.InceptionV4, "last_linear.weight"
    blocks = (count(r"features\.(\d+)\.branch2\.2\.conv\.weight")
              - count(r"features\.(\d+)\.branch2\.3\.conv\.weight"),
              count(r"features\.(\d+)\.branch2\.4\.conv\.weight"),
              count(r"features\.(\d+)\.branch1_1a\.conv\.weight"))
  elif "conv2d_1a.conv.weight" in state_dict:
    cls, head = inception_lib.InceptionResNetV2, "classif.weight"
    blocks = tuple(count(rf"{name}\.(\d+)\.") for name in ("repeat", "repeat_1", "repeat_2"))
  else:
    raise ConversionError(f"Not a timm Inception-v4 / Inception-ResNet-v2 state dict; first "
                          f"keys: {list(state_dict)[:5]}.")
  num_classes = int(state_dict[head].shape[0]) if head in state_dict else 0
  return cls, {"blocks": blocks, "num_classes": num_classes}


def _v4_prefixes(blocks) -> dict[str, str]:
  """Top-level Flax module -> timm `features.<i>`."""
  names = ["stem_0", "stem_1", "stem_2", "mixed_3a", "mixed_4a", "mixed_5a"]
  for (n, stage), reduction in zip(zip(blocks, "abc"), ("reduction_a", "reduction_b", None)):
    names += [f"inception_{stage}{j + 1}" for j in range(n)] + ([reduction] if reduction else [])
  return {name: f"features.{i}" for i, name in enumerate(names)}


def _top_prefix(name: str, v4_prefixes: dict | None) -> str:
  if name == "head":
    return "last_linear" if v4_prefixes is not None else "classif"
  if v4_prefixes is not None:
    return v4_prefixes[name]
  for flax_prefix, torch_name in _IRV2_REPEATS.items():
    m = re.fullmatch(rf"{flax_prefix}(\d+)", name)
    if m:
      return f"{torch_name}.{int(m[1]) - 1}"
  return "block8" if name == "block8_last" else name


def torch_key(path: tuple[str, ...], v4_prefixes: dict | None) -> str:
  """The timm key of the Flax variable at `path` (below its collection)."""
  *modules, leaf = path
  torch_leaf = _BN_LEAVES[leaf] if modules[-1] == "bn" else ("weight" if leaf == "kernel" else leaf)
  top, *inner = modules
  keep = _INCEPTION_C_ATTRIBUTES if top.startswith("inception_c") else ()
  inner = [m if m in keep else re.sub(r"_(\d+)$", r".\1", m) for m in inner]
  return ".".join([_top_prefix(top, v4_prefixes), *inner, torch_leaf])


def _transform(path: tuple[str, ...]):
  if path[-1] != "kernel":
    return mapping_lib.same
  return mapping_lib.linear_to_dense if path[0] == "head" else mapping_lib.oihw_to_hwio


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Flat timm Inception state dict -> {"params": ..., "batch_stats": ...}."""
  state_dict = mapping_lib.without_skipped(state_dict)
  cls, arch = infer_architecture(state_dict)
  v4_prefixes = _v4_prefixes(arch["blocks"]) if cls is inception_lib.InceptionV4 else None
  expected = mapping_lib.variable_shapes(cls(**arch), (1, 75, 75, 3))
  mapping = {torch_key(tuple(path), v4_prefixes): (collection, tuple(path), _transform(path))
             for collection, *path in expected}
  return mapping_lib.apply_mapping(state_dict, mapping, expected,
                                   f"Inception state dict for {cls.__name__}({arch})")


def convert(state_dict: Mapping[str, np.ndarray], model) -> Weights:
  """The family converter (`vision_jax.convert`): the network the state dict
  holds (`model`, the target, only chose the family); a backbone may leave
  the classifier's head unused."""
  del model
  return Weights(convert_state_dict(state_dict), ("params/head",))
