"""ResNet / ResNet-D PyTorch state dicts -> `resnet.ResNet` variables.

Two layouts, told apart by their stem:

torchvision (`torchvision.models.resnet*`, also timm's plain `resnet*`):
  conv1 / bn1                          -> stem_conv / stem_bn
  layer{i}.{j}.conv{k} / bn{k}         -> stage{i}_block{j+1}/conv{k} / bn{k}
  layer{i}.{j}.downsample.0 / .1       -> stage{i}_block{j+1}/shortcut/conv / bn
  fc                                   -> head
timm ResNet-D (`resnet*d`: deep stem, average-pool shortcuts):
  conv1.0 / conv1.1, conv1.3 / conv1.4, conv1.6 / bn1 -> stem_conv{0,1,2} / stem_bn{0,1,2}
  layer{i}.{j}.downsample.1 / .2       -> stage{i}_block{j+1}/shortcut/conv / bn (.0 is the pool)

Convs OIHW -> HWIO, the linear head [out, in] -> [in, out]; BatchNorm weight /
bias -> params scale / bias, running_mean / running_var -> batch_stats mean /
var (`num_batches_tracked` has no counterpart and is skipped). The
architecture (depths, block, stem width, ResNet-D) is read from the keys and
every tensor is checked against it: a missing, unused or misshapen tensor is
a ConversionError naming it.
"""
import re
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.convert import ConversionError, Weights
from vision_jax.models.backbones import resnet as resnet_lib

SKIPPED_SUFFIX = ".num_batches_tracked"
_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def infer_architecture(state_dict: Mapping[str, np.ndarray]) -> dict:
  """`ResNet` constructor arguments of the network the keys describe."""
  blocks = {}
  for key in state_dict:
    m = re.match(r"layer(\d+)\.(\d+)\.", key)
    if m:
      blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
  if not blocks or "bn1.weight" not in state_dict:
    raise ConversionError(f"Not a torchvision/timm ResNet state dict; first keys: "
                          f"{list(state_dict)[:5]}.")
  deep = "conv1.0.weight" in state_dict
  stem = state_dict["bn1.weight"]
  return {"stage_sizes": tuple(blocks[i] for i in sorted(blocks)),
          "block": "bottleneck" if any(".conv3." in k for k in state_dict) else "basic",
          "width": int(stem.shape[0]), "deep_stem": deep,
          "avg_down": any(".downsample.2." in k for k in state_dict),
          "num_classes": int(state_dict["fc.weight"].shape[0]) if "fc.weight" in state_dict else 0}


def _stem_names(deep: bool) -> list[tuple[str, str, str]]:
  """(torch conv, torch bn, Flax suffix) of the stem."""
  if deep:
    return [("conv1.0", "conv1.1", "0"), ("conv1.3", "conv1.4", "1"), ("conv1.6", "bn1", "2")]
  return [("conv1", "bn1", "")]


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  return np.transpose(w, (2, 3, 1, 0))


def _same(w: np.ndarray) -> np.ndarray:
  return w


def _mapping(state_dict: Mapping[str, np.ndarray], arch: dict) -> dict[str, tuple]:
  """Torch key -> (collection, Flax path tuple, transform)."""
  out = {}

  def conv(torch_name, path):
    out[f"{torch_name}.weight"] = ("params", path + ("kernel",), _oihw_to_hwio)

  def norm(torch_name, path):
    for suffix, (collection, leaf) in _BN.items():
      out[f"{torch_name}.{suffix}"] = (collection, path + (leaf,), _same)

  for torch_conv, torch_bn, suffix in _stem_names(arch["deep_stem"]):
    conv(torch_conv, (f"stem_conv{suffix}",))
    norm(torch_bn, (f"stem_bn{suffix}",))
  shortcut_conv, shortcut_bn = ("downsample.1", "downsample.2") if arch["avg_down"] else (
      "downsample.0", "downsample.1")
  convs = 3 if arch["block"] == "bottleneck" else 2
  for i, size in enumerate(arch["stage_sizes"], start=1):
    for j in range(size):
      src, dst = f"layer{i}.{j}", (f"stage{i}_block{j + 1}",)
      for k in range(1, convs + 1):
        conv(f"{src}.conv{k}", dst + (f"conv{k}",))
        norm(f"{src}.bn{k}", dst + (f"bn{k}",))
      if f"{src}.{shortcut_conv}.weight" in state_dict:
        conv(f"{src}.{shortcut_conv}", dst + ("shortcut", "conv"))
        norm(f"{src}.{shortcut_bn}", dst + ("shortcut", "bn"))
  if arch["num_classes"]:
    out["fc.weight"] = ("params", ("head", "kernel"), np.transpose)
    out["fc.bias"] = ("params", ("head", "bias"), _same)
  return out


def _shapes(arch: dict) -> dict[tuple, tuple]:
  model = resnet_lib.ResNet(**arch)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {tuple(p.key for p in path): tuple(leaf.shape) for path, leaf in flat}


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Flat torchvision/timm ResNet state dict -> {"params": ..., "batch_stats": ...}."""
  state_dict = {k: np.asarray(v) for k, v in state_dict.items() if not k.endswith(SKIPPED_SUFFIX)}
  arch = infer_architecture(state_dict)
  mapping = _mapping(state_dict, arch)
  missing, unused = sorted(set(mapping) - set(state_dict)), sorted(set(state_dict) - set(mapping))
  if missing or unused:
    raise ConversionError(f"ResNet state dict does not match ResNet({arch}): "
                          f"{len(missing)} missing keys {missing[:8]}; {len(unused)} unused keys "
                          f"{unused[:8]}.")
  expected = _shapes(arch)
  variables, errors = {}, []
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
    raise ConversionError("ResNet conversion failed: " + "; ".join(errors[:8]))
  return variables


def convert(state_dict: Mapping[str, np.ndarray], model: resnet_lib.ResNet) -> Weights:
  """The family converter (`vision_jax.convert`): the ResNet the state dict
  holds (`model`, the target, only chose the family); a backbone may leave
  the classifier's head unused."""
  del model
  return Weights(convert_state_dict(state_dict), ("params/head",))
