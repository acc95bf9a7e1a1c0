"""PVT v1 PyTorch checkpoints -> vision_jax.models.backbones.pvt.PVT parameters.

Two source layouts are recognised (and told apart automatically):

official (whai362/PVT classification/pvt.py; our names mirror it):
  patch_embed{i}.proj.{weight,bias}   -> patch_embed{i}/proj/{kernel,bias}   conv OIHW -> HWIO
  patch_embed{i}.norm.{weight,bias}   -> patch_embed{i}/norm/{scale,bias}
  pos_embed{i}                        -> pos_embed{i}                        [1, N_i(+1), C_i]
  block{i}.{j}.norm1 / norm2          -> block{i}_{j}/norm1 / norm2
  block{i}.{j}.attn.{q,kv,proj}       -> block{i}_{j}/attn/{q,kv,proj}       linear [out,in] -> [in,out]
  block{i}.{j}.attn.sr / attn.norm    -> block{i}_{j}/attn/sr / attn/norm    (stages with sr_ratio > 1)
  block{i}.{j}.mlp.{fc1,fc2}          -> block{i}_{j}/mlp/{fc1,fc2}
  cls_token, norm, head               -> cls_token, norm, head

Hugging Face `PvtForImageClassification` (prefix `pvt.encoder.`, or `encoder.`
for `PvtModel`; stages and blocks 0-based):
  patch_embeddings.{i-1}.projection / layer_norm / position_embeddings / cls_token
                                      -> patch_embed{i}.proj / .norm / pos_embed{i} / cls_token
  block.{i-1}.{j}.layer_norm_1 / layer_norm_2           -> block{i}.{j}.norm1 / norm2
  block.{i-1}.{j}.attention.self.query                  -> block{i}.{j}.attn.q
  block.{i-1}.{j}.attention.self.{key,value}            -> block{i}.{j}.attn.kv (concatenated, key first)
  block.{i-1}.{j}.attention.self.sequence_reduction / layer_norm -> attn.sr / attn.norm
  block.{i-1}.{j}.attention.output.dense                -> block{i}.{j}.attn.proj
  block.{i-1}.{j}.mlp.dense1 / dense2                   -> block{i}.{j}.mlp.fc1 / fc2
  layer_norm, classifier (no prefix)                    -> norm, head

Conversion is strict: every source tensor is used and every parameter filled,
with shapes checked; only cls_token, norm and head may be left over when
converting into a `features_only` backbone.
"""
import re
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.convert import ConversionError, Weights, load_state_dict
from vision_jax.models.backbones import pvt as pvt_lib

VARIANTS = {(2, 2, 2, 2): "pvt_tiny", (3, 4, 6, 3): "pvt_small", (3, 4, 18, 3): "pvt_medium",
            (3, 8, 27, 3): "pvt_large"}
HF_PREFIXES = ("pvt.encoder.", "encoder.")
HEAD_ONLY = ("cls_token", "norm", "head")  # Flax names a backbone does not have.


def _conv(w):
  return np.transpose(w, (2, 3, 1, 0))


def _linear(w):
  return np.transpose(w)


def _same(w):
  return w


class _Entry:
  """One Flax parameter and the source tensors (and transform) that fill it."""

  def __init__(self, path: tuple, sources: Sequence[str], fn: Callable):
    self.path, self.sources, self.fn = path, tuple(sources), fn


def detect_layout(state_dict: Mapping[str, np.ndarray]) -> str:
  """'official' or 'hf'."""
  keys = list(state_dict)
  if any(k.startswith(HF_PREFIXES) for k in keys):
    return "hf"
  if any(re.match(r"(patch_embed|pos_embed|block)\d", k) for k in keys):
    return "official"
  raise ConversionError(f"Not a PVT v1 checkpoint (official or Hugging Face layout); first keys: "
                        f"{keys[:5]}.")


def _hf_prefix(state_dict: Mapping[str, np.ndarray]) -> str:
  return next(p for p in HF_PREFIXES if any(k.startswith(p) for k in state_dict))


def infer_depths(state_dict: Mapping[str, np.ndarray]) -> tuple[int, ...]:
  """Blocks per stage, read from the block indices present."""
  if detect_layout(state_dict) == "hf":
    pattern = re.escape(_hf_prefix(state_dict)) + r"block\.(\d+)\.(\d+)\."
    offset = 1
  else:
    pattern, offset = r"block(\d+)\.(\d+)\.", 0
  depths = {}
  for k in state_dict:
    m = re.match(pattern, k)
    if m:
      stage = int(m.group(1)) + offset
      depths[stage] = max(depths.get(stage, 0), int(m.group(2)) + 1)
  if sorted(depths) != [1, 2, 3, 4]:
    raise ConversionError(f"Expected blocks in 4 stages, found stages {sorted(depths)}.")
  return tuple(depths[s] for s in (1, 2, 3, 4))


def infer_variant(state_dict: Mapping[str, np.ndarray]) -> str:
  """Name of the model constructor ('pvt_tiny', ...) for the depths present."""
  depths = infer_depths(state_dict)
  if depths not in VARIANTS:
    raise ConversionError(f"Depths {depths} match no PVT size; known: "
                          f"{', '.join(f'{v} {d}' for d, v in VARIANTS.items())}.")
  return VARIANTS[depths]


def _official_names(stage: int, block: int) -> dict:
  return {"norm1": f"block{stage}.{block}.norm1", "norm2": f"block{stage}.{block}.norm2",
          "q": f"block{stage}.{block}.attn.q", "kv": f"block{stage}.{block}.attn.kv",
          "proj": f"block{stage}.{block}.attn.proj", "sr": f"block{stage}.{block}.attn.sr",
          "sr_norm": f"block{stage}.{block}.attn.norm",
          "fc1": f"block{stage}.{block}.mlp.fc1", "fc2": f"block{stage}.{block}.mlp.fc2"}


def _hf_names(prefix: str, stage: int, block: int) -> dict:
  b = f"{prefix}block.{stage - 1}.{block}."
  return {"norm1": b + "layer_norm_1", "norm2": b + "layer_norm_2",
          "q": b + "attention.self.query",
          "kv": (b + "attention.self.key", b + "attention.self.value"),
          "proj": b + "attention.output.dense", "sr": b + "attention.self.sequence_reduction",
          "sr_norm": b + "attention.self.layer_norm",
          "fc1": b + "mlp.dense1", "fc2": b + "mlp.dense2"}


def _entries(model: pvt_lib.PVT, layout: str, prefix: str = "") -> list[_Entry]:
  """The full source -> target table for `model` in `layout`."""
  out = []

  def add(path, names, kind):
    names = (names,) if isinstance(names, str) else tuple(names)
    fn = {"conv": _conv, "linear": _linear, "norm": _same}[kind]
    w_names = [n + ".weight" for n in names]
    b_names = [n + ".bias" for n in names]
    # Several sources (HF key, value) stack along the output axis, like kv.
    out.append(_Entry(path + ("scale" if kind == "norm" else "kernel",), w_names,
                      lambda *ws: fn(np.concatenate(ws, 0))))
    out.append(_Entry(path + ("bias",), b_names, lambda *bs: np.concatenate(bs, 0)))

  for i in range(1, len(model.depths) + 1):
    if layout == "hf":
      e = f"{prefix}patch_embeddings.{i - 1}."
      proj, norm, pos = e + "projection", e + "layer_norm", e + "position_embeddings"
    else:
      proj, norm, pos = f"patch_embed{i}.proj", f"patch_embed{i}.norm", f"pos_embed{i}"
    add((f"patch_embed{i}", "proj"), proj, "conv")
    add((f"patch_embed{i}", "norm"), norm, "norm")
    out.append(_Entry((f"pos_embed{i}",), [pos], _same))
    for j in range(model.depths[i - 1]):
      n = _hf_names(prefix, i, j) if layout == "hf" else _official_names(i, j)
      blk = f"block{i}_{j}"
      add((blk, "norm1"), n["norm1"], "norm")
      add((blk, "norm2"), n["norm2"], "norm")
      for name in ("q", "kv", "proj"):
        add((blk, "attn", name), n[name], "linear")
      if model.sr_ratios[i - 1] > 1:
        add((blk, "attn", "sr"), n["sr"], "conv")
        add((blk, "attn", "norm"), n["sr_norm"], "norm")
      add((blk, "mlp", "fc1"), n["fc1"], "linear")
      add((blk, "mlp", "fc2"), n["fc2"], "linear")
  last = len(model.depths) - 1
  if layout == "hf":
    cls, norm, head = f"{prefix}patch_embeddings.{last}.cls_token", f"{prefix}layer_norm", "classifier"
  else:
    cls, norm, head = "cls_token", "norm", "head"
  out.append(_Entry(("cls_token",), [cls], _same))
  add(("norm",), norm, "norm")
  add(("head",), head, "linear")
  return out


def _param_shapes(model: pvt_lib.PVT) -> dict[tuple, tuple]:
  size = model.pretrain_size
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))
  flat = jax.tree_util.tree_flatten_with_path(shapes["params"])[0]
  return {tuple(p.key for p in path): tuple(leaf.shape) for path, leaf in flat}


def _fail(what: str, names) -> str:
  names = sorted(names)
  return f"{len(names)} {what}: {', '.join(names)}" if names else ""


def convert_state_dict(state_dict: Mapping[str, np.ndarray], features_only: bool = False,
                       model: pvt_lib.PVT | None = None) -> dict:
  """Flat PyTorch state dict (official or HF layout) -> {"params": nested numpy}.

  `model` defaults to the PVT size whose depths the checkpoint has, with the
  number of classes read from the head.
  """
  layout = detect_layout(state_dict)
  prefix = _hf_prefix(state_dict) if layout == "hf" else ""
  head_key = "classifier.weight" if layout == "hf" else "head.weight"
  if model is None:
    kwargs = {"features_only": features_only}
    if not features_only and head_key in state_dict:
      kwargs["num_classes"] = int(state_dict[head_key].shape[0])
    model = getattr(pvt_lib, infer_variant(state_dict))(**kwargs)
  features_only = model.features_only
  entries = _entries(model, layout, prefix)
  if features_only:
    droppable = {s for e in entries if e.path[0] in HEAD_ONLY for s in e.sources}
    entries = [e for e in entries if e.path[0] not in HEAD_ONLY]
  else:
    droppable = set()
  needed = {s for e in entries for s in e.sources}
  missing, unused = needed - set(state_dict), set(state_dict) - needed - droppable
  if missing or unused:
    raise ConversionError(
        f"{layout} PVT checkpoint does not match {'features_only ' * features_only}"
        f"PVT(depths={tuple(model.depths)}). " +
        "; ".join(filter(None, [_fail("missing keys", missing), _fail("unused keys", unused)])))
  shapes = _param_shapes(model)
  params, errors = {}, []
  for e in entries:
    value = np.asarray(e.fn(*[np.asarray(state_dict[s]) for s in e.sources]), np.float32)
    expected = shapes.pop(e.path, None)
    if expected is None:
      errors.append(f"{'/'.join(e.path)} (from {', '.join(e.sources)}) is no model parameter")
    elif value.shape != expected:
      errors.append(f"{', '.join(e.sources)}: converted shape {value.shape} != "
                    f"{'/'.join(e.path)} {expected}")
    node = params
    for key in e.path[:-1]:
      node = node.setdefault(key, {})
    node[e.path[-1]] = value
  errors += [f"parameter {'/'.join(p)} not filled" for p in sorted(shapes)]
  if errors:
    raise ConversionError("PVT conversion failed: " + "; ".join(errors))
  return {"params": params}


def load_pretrained(path: str, features_only: bool = False) -> dict:
  """Reads a PVT v1 checkpoint (.pth/.pt/.bin/.safetensors, official or HF
  layout; size inferred from the depths) -> {"params": nested numpy arrays}."""
  return convert_state_dict(load_state_dict(path), features_only=features_only)


def convert(state_dict: Mapping[str, np.ndarray], model: pvt_lib.PVT) -> Weights:
  """The family converter (`vision_jax.convert`): the PVT v1 classifier the
  state dict holds (size inferred from its depths; `model`, the target, only
  chose the family); a backbone may leave its cls token, final norm and head unused."""
  del model
  return Weights(convert_state_dict(state_dict), tuple(f"params/{name}" for name in HEAD_ONLY))
