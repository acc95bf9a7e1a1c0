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

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.convert import ConversionError, Weights
from vision_jax.models.backbones import vovnet as vovnet_lib

SKIPPED_SUFFIX = ".num_batches_tracked"
_BN = {"weight": ("params", "scale"), "bias": ("params", "bias"),
       "running_mean": ("batch_stats", "mean"), "running_var": ("batch_stats", "var")}


def _canonical(key: str) -> str:
  """'stages_1.blocks...' (timm features_only) -> 'stages.1.blocks...'."""
  return re.sub(r"^(stem|stages)_(\d+)\.", r"\1.\2.", key)


def _oihw_to_hwio(w: np.ndarray) -> np.ndarray:
  return np.transpose(w, (2, 3, 1, 0))


def _same(w: np.ndarray) -> np.ndarray:
  return w


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
      out[f"{src}.{torch_name}.weight"] = ("params", dst + (flax_name, "kernel"), _oihw_to_hwio)
    for suffix, (collection, leaf) in _BN.items():
      out[f"{src}.bn.{suffix}"] = (collection, dst + ("bn", leaf), _same)

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
        out[f"{src}.attn.fc.weight"] = ("params", dst + ("attn", "fc", "kernel"), _oihw_to_hwio)
        out[f"{src}.attn.fc.bias"] = ("params", dst + ("attn", "fc", "bias"), _same)
      in_features = arch["out_features"][i]
  if arch["num_classes"]:
    out["head.fc.weight"] = ("params", ("head", "kernel"), np.transpose)
    out["head.fc.bias"] = ("params", ("head", "bias"), _same)
  return out


def _shapes(arch: dict) -> dict[tuple, tuple]:
  model = vovnet_lib.VoVNet(**arch)
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3))))
  flat = jax.tree_util.tree_flatten_with_path(shapes)[0]
  return {tuple(p.key for p in path): tuple(leaf.shape) for path, leaf in flat}


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Flat timm VoVNet state dict -> {"params": ..., "batch_stats": ...}."""
  kept = [k for k in state_dict if not k.endswith(SKIPPED_SUFFIX)]
  canonical = {_canonical(k): np.asarray(state_dict[k]) for k in kept}
  if len(canonical) != len(kept):
    raise ConversionError("VoVNet state dict names some tensors twice (stem.0. and stem_0., ...).")
  state_dict = canonical
  arch = infer_architecture(state_dict)
  mapping = _mapping(arch)
  missing, unused = sorted(set(mapping) - set(state_dict)), sorted(set(state_dict) - set(mapping))
  if missing or unused:
    raise ConversionError(f"VoVNet state dict does not match VoVNet({arch}): "
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
    raise ConversionError("VoVNet conversion failed: " + "; ".join(errors[:8]))
  return variables


def convert(state_dict: Mapping[str, np.ndarray], model: vovnet_lib.VoVNet) -> Weights:
  """The family converter (`vision_jax.convert`): the VoVNet the state dict
  holds (`model`, the target, only chose the family and brings the residual);
  a backbone may leave the classifier's head unused."""
  del model
  return Weights(convert_state_dict(state_dict), ("params/head",))
