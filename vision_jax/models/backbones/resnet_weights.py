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

import numpy as np

from vision_jax.convert import ConversionError, Weights
from vision_jax.convert import mapping as mapping_lib
from vision_jax.models.backbones import resnet as resnet_lib


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


def _mapping(state_dict: Mapping[str, np.ndarray], arch: dict) -> dict[str, tuple]:
  """Torch key -> (collection, Flax path tuple, transform)."""
  out = {}
  conv = lambda torch_name, path: mapping_lib.add_conv(out, torch_name, path)
  norm = lambda torch_name, path: mapping_lib.add_norm(out, torch_name, path)

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
    mapping_lib.add_linear(out, "fc", ("head",))
  return out


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Flat torchvision/timm ResNet state dict -> {"params": ..., "batch_stats": ...}."""
  state_dict = mapping_lib.without_skipped(state_dict)
  arch = infer_architecture(state_dict)
  expected = mapping_lib.variable_shapes(resnet_lib.ResNet(**arch), (1, 64, 64, 3))
  return mapping_lib.apply_mapping(state_dict, _mapping(state_dict, arch), expected,
                                   f"ResNet state dict for ResNet({arch})")


def convert(state_dict: Mapping[str, np.ndarray], model: resnet_lib.ResNet) -> Weights:
  """The family converter (`vision_jax.convert`): the ResNet the state dict
  holds (`model`, the target, only chose the family); a backbone may leave
  the classifier's head unused."""
  del model
  return Weights(convert_state_dict(state_dict), ("params/head",))
