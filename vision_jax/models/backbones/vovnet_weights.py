"""timm VoVNet / eSE-VoVNet state dicts -> `vovnet.VoVNet` variables.

timm layout (vovnet39a, vovnet57a, ese_vovnet19b_dw, ese_vovnet39b, ese_vovnet57b):
  stem.{k}.conv / .bn                              -> stem{k}/conv / bn
  stem.{k}.conv_dw, .conv_pw (depthwise models)    -> stem{k}/conv_dw, conv_pw
  stages.{i}.blocks.{j}.conv_reduction.conv / .bn  -> stage{i}_block{j}/conv_reduction/...
  stages.{i}.blocks.{j}.conv_mid.{k}.<as stem>     -> stage{i}_block{j}/mid{k}/...
  stages.{i}.blocks.{j}.conv_concat.conv / .bn     -> stage{i}_block{j}/concat/conv / bn
  stages.{i}.blocks.{j}.attn.fc (weight, bias)     -> stage{i}_block{j}/attn/fc (kernel, bias)
  head.fc                                          -> head
timm's `features_only=True` models name the top modules stem_{k} / stages_{i}
instead (and have no head); both spellings are accepted.

Convs OIHW -> HWIO (a depthwise [C, 1, k, k] becomes [k, k, 1, C]), the linear
head [out, in] -> [in, out]; BatchNorm weight / bias -> params scale / bias,
running_mean / running_var -> batch_stats mean / var (`num_batches_tracked` is
skipped). The architecture (stem and stage widths, blocks per stage, convs
per block, depthwise, eSE) is read from the keys and every tensor is checked
against it: a missing, unused or misshapen tensor is a ConversionError naming
it. The V2 identity residual has no tensors; it belongs to the target model
(timm's `b` models have it, the `a` models not), so one converter serves both.
"""
import re
from typing import Mapping

import numpy as np

from vision_jax.convert import ConversionError, Weights
from vision_jax.convert import mapping as mapping_lib
from vision_jax.models.backbones import vovnet as vovnet_lib


def _canonical(key: str) -> str:
  """'stages_1.blocks...' (timm features_only) -> 'stages.1.blocks...'."""
  return re.sub(r"^(stem|stages)_(\d+)\.", r"\1.\2.", key)


def _width(state_dict: Mapping[str, np.ndarray], key: str) -> int:
  if key not in state_dict:
    raise ConversionError(f"VoVNet state dict has no {key!r}, needed to read the architecture.")
  return int(state_dict[key].shape[0])


def infer_architecture(state_dict: Mapping[str, np.ndarray]) -> dict:
  """`VoVNet` constructor arguments of the network the keys describe
  (`residual` excepted: it has no tensors)."""
  blocks, layers = {}, 0
  for key in state_dict:
    m = re.match(r"stages\.(\d+)\.blocks\.(\d+)\.", key)
    if m:
      blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
    m = re.match(r"stages\.\d+\.blocks\.\d+\.conv_mid\.(\d+)\.", key)
    if m:
      layers = max(layers, int(m[1]) + 1)
  if not blocks or "stem.0.conv.weight" not in state_dict:
    raise ConversionError(f"Not a timm VoVNet state dict; first keys: {list(state_dict)[:5]}.")
  stages = range(len(blocks))
  if sorted(blocks) != list(stages):
    raise ConversionError(f"VoVNet state dict has stages {sorted(blocks)}, not 0..n-1.")
  return {
      "blocks": tuple(blocks[i] for i in stages), "layers": layers,
      "stem_features": tuple(_width(state_dict, f"stem.{k}.bn.weight") for k in range(3)),
      "mid_features": tuple(_width(state_dict, f"stages.{i}.blocks.0.conv_mid.0.bn.weight")
                            for i in stages),
      "out_features": tuple(_width(state_dict, f"stages.{i}.blocks.0.conv_concat.bn.weight")
                            for i in stages),
      "depthwise": "stem.1.conv_dw.weight" in state_dict,
      "ese": any(".attn.fc." in k for k in state_dict),
      "num_classes": _width(state_dict, "head.fc.weight") if "head.fc.weight" in state_dict else 0}


def _mapping(arch: dict) -> dict[str, tuple]:
  """Torch key -> (collection, Flax path tuple, transform)."""
  out = {}

  def conv_bn(src, dst, separable):
    convs = (("conv_dw", "conv_dw"), ("conv_pw", "conv_pw")) if separable else (("conv", "conv"),)
    for torch_name, flax_name in convs:
      mapping_lib.add_conv(out, f"{src}.{torch_name}", dst + (flax_name,))
    mapping_lib.add_norm(out, f"{src}.bn", dst + ("bn",))

  depthwise = arch["depthwise"]
  for k in range(3):
    conv_bn(f"stem.{k}", (f"stem{k}",), depthwise and k > 0)
  in_features = arch["stem_features"][-1]
  for i, size in enumerate(arch["blocks"]):
    mid = arch["mid_features"][i]
    for j in range(size):
      src, dst = f"stages.{i}.blocks.{j}", (f"stage{i}_block{j}",)
      if depthwise and in_features != mid:
        conv_bn(f"{src}.conv_reduction", dst + ("conv_reduction",), False)
      for k in range(arch["layers"]):
        conv_bn(f"{src}.conv_mid.{k}", dst + (f"mid{k}",), depthwise)
      conv_bn(f"{src}.conv_concat", dst + ("concat",), False)
      if arch["ese"] and j == size - 1:
        mapping_lib.add_conv(out, f"{src}.attn.fc", dst + ("attn", "fc"), bias=True)
      in_features = arch["out_features"][i]
  if arch["num_classes"]:
    mapping_lib.add_linear(out, "head.fc", ("head",))
  return out


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Flat timm VoVNet state dict -> {"params": ..., "batch_stats": ...}."""
  kept = mapping_lib.without_skipped(state_dict)
  state_dict = {_canonical(k): v for k, v in kept.items()}
  if len(state_dict) != len(kept):
    raise ConversionError("VoVNet state dict names some tensors twice (stem.0. and stem_0., ...).")
  arch = infer_architecture(state_dict)
  expected = mapping_lib.variable_shapes(vovnet_lib.VoVNet(**arch), (1, 64, 64, 3))
  return mapping_lib.apply_mapping(state_dict, _mapping(arch), expected,
                                   f"VoVNet state dict for VoVNet({arch})")


def convert(state_dict: Mapping[str, np.ndarray], model: vovnet_lib.VoVNet) -> Weights:
  """The family converter (`vision_jax.convert`): the VoVNet the state dict
  holds (`model`, the target, only chose the family and brings the residual);
  a backbone may leave the classifier's head unused."""
  del model
  return Weights(convert_state_dict(state_dict), ("params/head",))
