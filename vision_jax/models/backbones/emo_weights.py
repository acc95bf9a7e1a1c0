"""Official EMOv2 state dicts (zhangzjn/EMOv2, `EMO2_*_k5_hybrid`) -> `emo.EMO2` variables.

  stage0.0.conv.{weight,bias} / .norm      -> stem_conv / stem_norm       3x3 s2 conv + BN
  stage0.1.conv.weight / .norm             -> stem_dw / stem_dw_norm      depthwise 3x3 + BN
  stage0.2.conv.weight                     -> stem_proj                   1x1
  stage{S}.{J}.norm (BN) or .norm.norm (LN) -> stage{S}_{J}/norm
  stage{S}.{J}.eops.0.net.conv             -> stage{S}_{J}/expand         1x1 conv expansion
  stage{S}.{J}.eops.0.qk.conv / .v.conv    -> stage{S}_{J}/attn/qk / attn/v
  stage{S}.{J}.conv_local.conv / .norm     -> stage{S}_{J}/dw / dw_norm
  stage{S}.{J}.proj.conv.weight            -> stage{S}_{J}/proj
  stage{S}.{J}.ls.gamma [1, C, 1, 1]       -> stage{S}_{J}/gamma [C]
  norm.norm / head                         -> norm / head

k x k convs OIHW -> HWIO; 1x1 convs [O, I, 1, 1] and the linear head [out, in]
-> Dense kernels [in, out]; BatchNorm weight / bias -> params scale / bias,
running_mean / running_var -> batch_stats mean / var (`num_batches_tracked` is
skipped); LayerNorm weight / bias -> scale / bias. Depths, widths, expansions,
the depthwise kernel size, which stages attend and their norms are read from
the keys (the activations follow the norms: SiLU with BatchNorm, GELU with
LayerNorm, as in every official variant); the q/k head width (`dim_heads`)
is not in the weights and comes from the target model when its depths and
widths match, else from the official variant of those. Every tensor is
checked: a missing, unused or misshapen one is a ConversionError naming it.
"""
import math
import re
from typing import Mapping

import numpy as np

from vision_jax.convert import ConversionError, Weights
from vision_jax.convert import mapping as mapping_lib
from vision_jax.models.backbones import emo as emo_lib

_VARIANTS = (emo_lib.emo2_1m, emo_lib.emo2_2m, emo_lib.emo2_5m, emo_lib.emo2_20m,
             emo_lib.emo2_50m)


def _expansion(mid: int, c_in: int) -> float:
  """r with int(c_in * r) == mid (the official width rule)."""
  r = mid / c_in
  while int(c_in * r) < mid:
    r = math.nextafter(r, math.inf)
  return r


def infer_architecture(state_dict: Mapping[str, np.ndarray],
                       dim_heads: tuple | None = None) -> dict:
  """`EMO2` constructor arguments of the network the keys describe; `dim_heads`
  (not stored in the weights) from the argument or the official variant."""
  blocks = {}
  for key in state_dict:
    m = re.match(r"stage([1-9]\d*)\.(\d+)\.", key)
    if m:
      blocks[int(m[1])] = max(blocks.get(int(m[1]), 0), int(m[2]) + 1)
  stages = sorted(blocks)
  if not stages or stages != list(range(1, len(stages) + 1)) or \
      "stage0.0.conv.weight" not in state_dict:
    raise ConversionError(f"Not an official EMOv2 state dict; first keys: {list(state_dict)[:5]}.")
  try:
    embed = [int(state_dict[f"stage{s}.0.proj.conv.weight"].shape[0]) for s in stages]
    exp = []
    for s, c in zip(stages, embed):
      if blocks[s] > 1:
        mid = state_dict[f"stage{s}.1.conv_local.conv.weight"].shape[0]
        exp.append(_expansion(int(mid), c))
      else:
        c_in = embed[s - 2] if s > 1 else int(state_dict["stage0.2.conv.weight"].shape[0])
        exp.append(_expansion(int(state_dict[f"stage{s}.0.conv_local.conv.weight"].shape[0]),
                              2 * c_in))
    kernel = int(state_dict["stage1.0.conv_local.conv.weight"].shape[-1])
  except KeyError as e:
    raise ConversionError(f"EMOv2 state dict without {e.args[0]}.") from e
  arch = {"depths": tuple(blocks[s] for s in stages), "embed_dims": tuple(embed),
          "exp_ratios": tuple(exp), "kernel_size": kernel,
          "attention": tuple(f"stage{s}.1.eops.0.qk.conv.weight" in state_dict for s in stages),
          "norms": tuple("layer" if f"stage{s}.0.norm.norm.weight" in state_dict else "batch"
                         for s in stages),
          "num_classes": int(state_dict["head.weight"].shape[0]) if "head.weight" in state_dict
                         else 0,
          "features_only": "norm.norm.weight" not in state_dict}
  arch["acts"] = tuple("gelu" if n == "layer" else "silu" for n in arch["norms"])
  if dim_heads is None:
    for ctor in _VARIANTS:
      if (ctor.keywords["depths"], ctor.keywords["embed_dims"]) == (arch["depths"],
                                                                     arch["embed_dims"]):
        dim_heads = ctor.keywords["dim_heads"]
  if dim_heads is None:
    if any(arch["attention"]):
      raise ConversionError(f"EMOv2 with depths {arch['depths']} and widths {arch['embed_dims']} "
                            "is no official variant: its dim_heads are not in the weights; "
                            "convert it for a model that has them.")
    dim_heads = tuple(32 for _ in stages)
  arch["dim_heads"] = tuple(dim_heads)
  return arch


def _pointwise(w: np.ndarray) -> np.ndarray:
  """A 1x1 conv weight [O, I, 1, 1] -> a Dense kernel [I, O] (other shapes pass
  through, to be reported as misshapen)."""
  return w.reshape(w.shape[:2]).T if w.shape[2:] == (1, 1) else w


def _flat(w: np.ndarray) -> np.ndarray:
  return w.reshape(-1)


def _mapping(arch: dict) -> dict[str, tuple]:
  """Torch key -> (collection, Flax path tuple, transform)."""
  out = {}

  def pointwise(torch_name, path, bias):
    out[f"{torch_name}.weight"] = ("params", path + ("kernel",), _pointwise)
    if bias:
      out[f"{torch_name}.bias"] = ("params", path + ("bias",), mapping_lib.same)

  def norm(torch_name, path, layer):
    if layer:  # LayerNorm2d wraps an nn.LayerNorm as `.norm`.
      mapping_lib.add_norm(out, f"{torch_name}.norm", path, mapping_lib.LAYER_NORM)
    else:
      mapping_lib.add_norm(out, torch_name, path)

  mapping_lib.add_conv(out, "stage0.0.conv", ("stem_conv",), bias=True)
  norm("stage0.0.norm", ("stem_norm",), False)
  mapping_lib.add_conv(out, "stage0.1.conv", ("stem_dw",))
  norm("stage0.1.norm", ("stem_dw_norm",), False)
  pointwise("stage0.2.conv", ("stem_proj",), False)
  for i, depth in enumerate(arch["depths"]):
    for j in range(depth):
      src, dst = f"stage{i + 1}.{j}", (f"stage{i + 1}_{j}",)
      norm(f"{src}.norm", dst + ("norm",), arch["norms"][i] == "layer")
      if arch["attention"][i] and j > 0:
        pointwise(f"{src}.eops.0.qk.conv", dst + ("attn", "qk"), True)
        pointwise(f"{src}.eops.0.v.conv", dst + ("attn", "v"), True)
      else:
        pointwise(f"{src}.eops.0.net.conv", dst + ("expand",), True)
      mapping_lib.add_conv(out, f"{src}.conv_local.conv", dst + ("dw",))
      norm(f"{src}.conv_local.norm", dst + ("dw_norm",), False)
      pointwise(f"{src}.proj.conv", dst + ("proj",), False)
      out[f"{src}.ls.gamma"] = ("params", dst + ("gamma",), _flat)
  if not arch["features_only"]:
    norm("norm", ("norm",), True)
    if arch["num_classes"]:
      mapping_lib.add_linear(out, "head", ("head",))
  return out


def convert_state_dict(state_dict: Mapping[str, np.ndarray],
                       dim_heads: tuple | None = None) -> dict:
  """Flat official EMOv2 state dict -> {"params": ..., "batch_stats": ...};
  `dim_heads` for a layout that is no official variant."""
  state_dict = mapping_lib.without_skipped(state_dict)
  arch = infer_architecture(state_dict, dim_heads)
  expected = mapping_lib.variable_shapes(emo_lib.EMO2(**arch), (1, 64, 64, 3))
  return mapping_lib.apply_mapping(state_dict, _mapping(arch), expected, f"EMO2({arch})")


def convert(state_dict: Mapping[str, np.ndarray], model: emo_lib.EMO2) -> Weights:
  """The family converter (`vision_jax.convert`): the EMOv2 the state dict holds,
  with `model`'s dim_heads where its depths and widths are the same; a backbone
  may leave the classifier's head unused."""
  state_dict = mapping_lib.without_skipped(state_dict)
  arch = infer_architecture(state_dict, tuple(model.dim_heads))
  same = (arch["depths"], arch["embed_dims"]) == (tuple(model.depths), tuple(model.embed_dims))
  return Weights(convert_state_dict(state_dict, tuple(model.dim_heads) if same else None),
                 ("params/head",))
