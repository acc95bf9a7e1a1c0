"""PVT checkpoint conversion: Hugging Face and official layouts give the same
outputs as the PyTorch model; strict key checks; pickles are not executed.

The reference is a randomly initialised Hugging Face `PvtForImageClassification`
(PVT-Tiny, 10 classes) with two corrections so that it is the official model:
- its patch-embedding and spatial-reduction LayerNorms use config.layer_norm_eps
  (1e-6); the official code uses PyTorch's default 1e-5 there;
- its `interpolate_pos_encoding` reshapes the stored embedding to the *target*
  grid (and never skips, since it compares H*W with image_size**2), so any input
  other than the pretraining size fails; it is replaced by the official
  resize (stored grid -> target grid, bilinear, align_corners=False).
"""
import functools
import re
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.convert import ConversionError, load_state_dict
from vision_jax.models.backbones.pvt_weights import convert_state_dict, load_pretrained
from vision_jax.models.backbones import pvt

import torch  # Reference implementations: installed by the `test` extra.
import transformers
from safetensors.torch import save_file

F = torch.nn.functional

NUM_CLASSES = 10
DEPTHS = (2, 2, 2, 2)


def _official_resize(self, embeddings, height, width):
  grid = (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])
  embeddings = embeddings.reshape(1, *grid, -1).permute(0, 3, 1, 2)
  embeddings = F.interpolate(embeddings, size=(height, width), mode="bilinear",
                             align_corners=False)
  return embeddings.reshape(1, -1, height * width).permute(0, 2, 1)


@pytest.fixture(scope="module")
def hf_model():
  torch.manual_seed(0)
  model = transformers.PvtForImageClassification(
      transformers.PvtConfig(num_labels=NUM_CLASSES)).eval()
  with torch.no_grad():  # Non-trivial norms, biases and position embeddings.
    for name, p in model.named_parameters():
      p.add_(torch.randn_like(p) * (1. if "position" in name else 0.02))
  for emb in model.pvt.encoder.patch_embeddings:
    emb.layer_norm.eps = 1e-5
    emb.interpolate_pos_encoding = types.MethodType(_official_resize, emb)
  for stage in model.pvt.encoder.block:
    for layer in stage:
      if hasattr(layer.attention.self, "layer_norm"):
        layer.attention.self.layer_norm.eps = 1e-5
  return model


@pytest.fixture(scope="module")
def hf_state(hf_model):
  return {k: v.detach().numpy().copy() for k, v in hf_model.state_dict().items()}


@pytest.fixture(scope="module")
def files(hf_model, tmp_path_factory):
  root = tmp_path_factory.mktemp("ckpt")
  state = {k: v.contiguous() for k, v in hf_model.state_dict().items()}
  save_file(state, str(root / "pvt.safetensors"))
  torch.save(state, root / "pvt.pth")
  torch.save({"model": state, "epoch": 3}, root / "wrapped.pth")
  return root


def _hf_to_official(state):
  """Renames HF tensors to the official classification/pvt.py layout."""
  block = {"layer_norm_1": "norm1", "layer_norm_2": "norm2", "attention.self.query": "attn.q",
           "attention.self.sequence_reduction": "attn.sr", "attention.self.layer_norm": "attn.norm",
           "attention.output.dense": "attn.proj", "mlp.dense1": "mlp.fc1", "mlp.dense2": "mlp.fc2"}
  embed = {"projection": "proj", "layer_norm": "norm"}
  out = {}
  for source, value in state.items():
    key = source.removeprefix("pvt.encoder.")
    if m := re.fullmatch(r"patch_embeddings\.(\d)\.(position_embeddings|cls_token)", key):
      out["cls_token" if m[2] == "cls_token" else f"pos_embed{int(m[1]) + 1}"] = value
    elif m := re.fullmatch(r"patch_embeddings\.(\d)\.(\w+)\.(weight|bias)", key):
      out[f"patch_embed{int(m[1]) + 1}.{embed[m[2]]}.{m[3]}"] = value
    elif m := re.fullmatch(r"block\.(\d)\.(\d+)\.(.+)\.(weight|bias)", key):
      prefix = f"block{int(m[1]) + 1}.{m[2]}."
      if m[3] == "attention.self.key":
        value_source = source.replace("attention.self.key", "attention.self.value")
        out[prefix + "attn.kv." + m[4]] = np.concatenate([value, state[value_source]])
      elif m[3] != "attention.self.value":
        out[prefix + block[m[3]] + "." + m[4]] = value
    else:
      out[{"layer_norm.weight": "norm.weight", "layer_norm.bias": "norm.bias",
           "classifier.weight": "head.weight", "classifier.bias": "head.bias"}[key]] = value
  return out


def _official_shapes(depths, num_classes, dims=(64, 128, 320, 512), mlp=(8, 8, 4, 4),
                     sr=(8, 4, 2, 1), img_size=224):
  """Key -> shape of the official PyramidVisionTransformer state dict."""
  shapes, c_in = {}, 3
  for i, c in enumerate(dims):
    p = 4 if i == 0 else 2
    side = (img_size if i == 0 else img_size // 2 ** (i + 1)) // p
    shapes |= {f"patch_embed{i + 1}.proj.weight": (c, c_in, p, p),
               f"patch_embed{i + 1}.proj.bias": (c,), f"patch_embed{i + 1}.norm.weight": (c,),
               f"patch_embed{i + 1}.norm.bias": (c,),
               f"pos_embed{i + 1}": (1, side * side + (i == 3), c)}
    for j in range(depths[i]):
      b = f"block{i + 1}.{j}."
      linear = {"attn.q": (c, c), "attn.kv": (2 * c, c), "attn.proj": (c, c),
                "mlp.fc1": (c * mlp[i], c), "mlp.fc2": (c, c * mlp[i])}
      norms = ["norm1", "norm2"] + (["attn.norm"] if sr[i] > 1 else [])
      for name, shape in linear.items():
        shapes |= {b + name + ".weight": shape, b + name + ".bias": shape[:1]}
      for name in norms:
        shapes |= {b + name + ".weight": (c,), b + name + ".bias": (c,)}
      if sr[i] > 1:
        shapes |= {b + "attn.sr.weight": (c, c, sr[i], sr[i]), b + "attn.sr.bias": (c,)}
    c_in = c
  return shapes | {"cls_token": (1, 1, dims[-1]), "norm.weight": (dims[-1],),
                   "norm.bias": (dims[-1],), "head.weight": (num_classes, dims[-1]),
                   "head.bias": (num_classes,)}


@functools.cache
def _apply(features_only: bool):
  model = pvt.pvt_tiny(num_classes=NUM_CLASSES, features_only=features_only)
  return jax.jit(lambda variables, x: model.apply(variables, x))


def _nhwc(x):
  return jnp.asarray(x.permute(0, 2, 3, 1).numpy())


def _torch_backbone(hf_model, x):
  """Official detection backbone (no cls token/norm/head) run with the HF modules."""
  outs = []
  for emb, layers in zip(hf_model.pvt.encoder.patch_embeddings, hf_model.pvt.encoder.block):
    x = emb.projection(x)
    h, w = x.shape[-2:]
    x = emb.layer_norm(x.flatten(2).transpose(1, 2))
    pos = emb.position_embeddings[:, 1:] if emb.cls_token is not None else emb.position_embeddings
    x = x + emb.interpolate_pos_encoding(pos, h, w)
    for layer in layers:
      x = layer(x, h, w)[0]
    x = x.reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2)
    outs.append(x)
  return outs


def test_official_key_table_matches_renamed_hf(hf_state):
  renamed = _hf_to_official(hf_state)
  assert {k: v.shape for k, v in renamed.items()} == _official_shapes(DEPTHS, NUM_CLASSES)


def test_hf_safetensors_logits_at_224(hf_model, files):
  variables = load_pretrained(str(files / "pvt.safetensors"))
  x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
  with torch.no_grad():
    expected = hf_model(x).logits.numpy()
  logits, _ = _apply(False)(variables, _nhwc(x))
  np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)


def test_pth_equals_safetensors(files):
  reference = load_pretrained(str(files / "pvt.safetensors"))
  for name in ("pvt.pth", "wrapped.pth"):
    jax.tree.map(np.testing.assert_array_equal, load_pretrained(str(files / name)), reference)


def test_hidden_states_and_features_at_nonsquare_size(hf_model, files):
  x = torch.randn(1, 3, 256, 352, generator=torch.Generator().manual_seed(2))
  with torch.no_grad():
    hf = hf_model(x, output_hidden_states=True)
    expected_maps = [m.permute(0, 2, 3, 1).numpy() for m in _torch_backbone(hf_model, x)]
  grids = [(256 // s, 352 // s) for s in (4, 8, 16, 32)]
  logits, aux = _apply(False)(load_pretrained(str(files / "pvt.pth")), _nhwc(x))
  np.testing.assert_allclose(logits, hf.logits.numpy(), atol=1e-4, rtol=0)
  ends = np.cumsum(DEPTHS) - 1  # HF hidden_states: one per block, then the final norm.
  for i, (grid, end) in enumerate(zip(grids, ends)):
    tokens = hf.hidden_states[end][:, -grid[0] * grid[1]:].numpy()  # Stage 4: cls first.
    np.testing.assert_allclose(aux[f"stage{i + 1}"], tokens.reshape(1, *grid, -1), atol=1e-4,
                               rtol=0)
  # The backbone's stages 1-3 equal the classifier's; stage 4 differs (no cls token).
  maps, _ = _apply(True)(load_pretrained(str(files / "pvt.pth"), features_only=True), _nhwc(x))
  for ours, expected in zip(maps.values(), expected_maps):
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
  assert not np.allclose(maps["C5"], aux["stage4"], atol=1e-3)


def test_official_layout(hf_model, hf_state):
  official = _hf_to_official(hf_state)
  variables = convert_state_dict(official)
  jax.tree.map(np.testing.assert_array_equal, variables, convert_state_dict(hf_state))
  x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
  with torch.no_grad():
    expected = hf_model(x).logits.numpy()
  np.testing.assert_allclose(_apply(False)(variables, _nhwc(x))[0], expected, atol=1e-4, rtol=0)
  # A backbone takes the classification checkpoint (dropping cls_token, norm,
  # head) or a checkpoint without them; a classifier needs them.
  backbone = {k: v for k, v in official.items() if not k.startswith(("cls_token", "norm.", "head."))}
  for state in (official, backbone):
    params = convert_state_dict(state, features_only=True)["params"]
    assert params["pos_embed4"].shape == (1, 50, 512) and "head" not in params
  with pytest.raises(ConversionError, match=r"missing keys: cls_token, head\.bias, head\.weight"):
    convert_state_dict(backbone)


@pytest.mark.parametrize("layout, drop", [("official", "block2.1.attn.kv.bias"),
                                          ("hf", "pvt.encoder.block.1.1.attention.self.value.weight"),
                                          ("official", "pos_embed3")])
def test_missing_key_is_named(hf_state, layout, drop):
  state = dict(_hf_to_official(hf_state) if layout == "official" else hf_state)
  del state[drop]
  with pytest.raises(ConversionError, match=r"1 missing keys: " + re.escape(drop) + "$"):
    convert_state_dict(state)


@pytest.mark.parametrize("layout", ["official", "hf"])
def test_extra_key_is_named(hf_state, layout):
  state = dict(_hf_to_official(hf_state) if layout == "official" else hf_state)
  state["block2.1.attn.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ConversionError, match=r"unused keys: block2\.1\.attn\.extra\.weight"):
    convert_state_dict(state)


def test_wrong_shape_is_named(hf_state):
  state = _hf_to_official(hf_state)
  state["block1.0.attn.q.weight"] = state["block1.0.attn.q.weight"][:, :32]
  with pytest.raises(ConversionError, match=r"block1\.0\.attn\.q\.weight: converted shape"):
    convert_state_dict(state)


def test_unknown_depths_and_layout_fail(hf_state):
  state = {k: v for k, v in _hf_to_official(hf_state).items() if not k.startswith("block3.1.")}
  with pytest.raises(ConversionError, match=r"Depths \(2, 2, 1, 2\) match no PVT size"):
    convert_state_dict(state)
  with pytest.raises(ConversionError, match="Not a PVT v1 checkpoint"):
    convert_state_dict({"fc.weight": np.zeros((2, 2))})


class _Payload:
  """Unpickling this runs print(): only a non-weights_only load would do it."""

  def __reduce__(self):
    return print, ("payload executed",)


def test_pth_is_loaded_with_weights_only(tmp_path, capsys):
  path = tmp_path / "evil.pth"
  torch.save({"model": {"w": torch.zeros(2)}, "extra": _Payload()}, path)
  with pytest.raises(ValueError, match="weights_only"):
    load_state_dict(str(path))
  assert "payload executed" not in capsys.readouterr().out
  with pytest.raises(ValueError, match="Unknown checkpoint format"):
    load_state_dict(str(tmp_path / "weights.npz"))
