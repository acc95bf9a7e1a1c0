"""EMOv2 weights in the official layout: logits and stage outputs equal those the
official code computed (data/emo2_1m_reference.npz, see make_emo_reference.py)
on the same seeded weights, and a mismatched state dict is named."""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import make_emo_reference as reference
from test_resnet_weights import _assert_close
from vision_jax import convert
from vision_jax.convert import ConversionError
from vision_jax.models.backbones import emo, emo_weights

DATA = np.load(os.path.join(os.path.dirname(__file__), "data", "emo2_1m_reference.npz"))


@functools.lru_cache(maxsize=None)
def _official_state() -> tuple:
  """The seeded weights the reference was computed with, as (key, array) pairs."""
  keys = [str(k) for k in DATA["keys"]]
  weights = reference.reference_weights(keys, reference.decode_shapes(DATA["shapes"]),
                                        int(DATA["weight_seed"]))
  return tuple((k, weights[k]) for k in keys)  # The official key order.


def _state() -> dict:
  return dict(_official_state())


def _images(size) -> jnp.ndarray:
  images = reference.reference_images(size, int(DATA["image_seed"]))
  return jnp.asarray(images.transpose(0, 2, 3, 1))


@functools.lru_cache(maxsize=None)
def _forward():
  return jax.jit(lambda variables, x: emo.emo2_1m().apply(variables, x))


def test_the_reference_is_the_official_1m_layout():
  keys = [str(k) for k in DATA["keys"]]
  assert len(keys) == 228 and keys[0] == "stage0.0.conv.weight" and keys[-1] == "head.bias"
  assert sum(int(np.prod(s)) for k, s in zip(keys, reference.decode_shapes(DATA["shapes"]))
             if not k.endswith("num_batches_tracked") and "running_" not in k) == 1_460_844
  assert emo_weights.infer_architecture(_state()) == {
      "depths": (2, 2, 8, 3), "embed_dims": (32, 48, 80, 180), "exp_ratios": (2., 2.5, 3., 3.5),
      "kernel_size": 5, "attention": (False, False, True, True),
      "norms": ("batch", "batch", "layer", "layer"), "acts": ("silu", "silu", "gelu", "gelu"),
      "num_classes": 1000, "features_only": False, "dim_heads": (16, 16, 20, 20)}


def test_logits_at_224_equal_the_official_after_loading_a_pth(tmp_path):
  path = tmp_path / "emo2_1m.pth"
  torch.save({k: torch.from_numpy(v) for k, v in _official_state()}, path)
  weights = convert.load(str(path), emo.emo2_1m())
  assert weights.droppable == ("params/head",)
  got, _ = _forward()(weights.variables, _images((224, 224)))
  _assert_close(got, DATA["logits_224x224"])


def test_logits_and_feature_levels_at_160x192_equal_the_official():
  # Stage-3/4 maps of 10x12 and 5x6: the 7x7 windows need padding.
  variables = emo_weights.convert_state_dict(_state())
  got, _ = _forward()(variables, _images((160, 192)))
  _assert_close(got, DATA["logits_160x192"])
  backbone = emo.emo2_1m(features_only=True)
  weights = emo_weights.convert(_state(), backbone)
  params = {k: v for k, v in weights.variables["params"].items() if k not in ("norm", "head")}
  levels, _ = jax.jit(backbone.apply)({**weights.variables, "params": params},
                                      _images((160, 192)))
  declared = backbone.feature_levels()
  assert list(levels) == list(declared) == ["C2", "C3", "C4", "C5"]
  for s, (name, level) in enumerate(declared.items(), start=1):
    assert levels[name].shape == (2, 160 // level.stride, 192 // level.stride, level.channels)
    _assert_close(levels[name].mean((1, 2)), DATA[f"stage{s}_mean_160x192"])


def test_a_state_dict_that_does_not_fit_is_named():
  state = _state()
  del state["stage3.2.eops.0.qk.conv.bias"]
  with pytest.raises(ConversionError,
                     match=r"1 missing keys \['stage3.2.eops.0.qk.conv.bias'\]"):
    emo_weights.convert_state_dict(state)
  state = _state()
  state["stage2.1.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ConversionError, match=r"1 unused keys \['stage2.1.extra.weight'\]"):
    emo_weights.convert_state_dict(state)
  state = _state()
  state["stage4.1.eops.0.v.conv.weight"] = np.zeros((630, 181, 1, 1), np.float32)
  with pytest.raises(ConversionError, match=r"stage4.1.eops.0.v.conv.weight: converted shape "
                                            r"\(181, 630\) != stage4_1/attn/v/kernel \(180, 630\)"):
    emo_weights.convert_state_dict(state)
  with pytest.raises(ConversionError, match="Not an official EMOv2"):
    emo_weights.convert_state_dict({"layer1.0.conv1.weight": np.zeros((2, 2))})


def test_dim_heads_come_from_the_model_or_the_official_variant():
  state = {k: v for k, v in _state().items() if not k.startswith("stage4.2.")}  # depths 2,2,8,2
  with pytest.raises(ConversionError, match="no official variant"):
    emo_weights.convert_state_dict(state)
  model = emo.emo2_1m(depths=(2, 2, 8, 2), dim_heads=(16, 16, 40, 60))
  weights = emo_weights.convert(state, model)
  assert weights.variables["params"]["stage4_1"]["attn"]["qk"]["kernel"].shape == (180, 360)
  assert "stage4_2" not in weights.variables["params"]
