"""timm VoVNet weights: logits and feature levels equal timm's on random weights
(ceil-mode pooling at even and odd sizes), and a mismatched state dict is named."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm  # Reference implementations: installed by the `test` extra.
import torch

from vision_jax import convert
from vision_jax.convert import ConversionError
from vision_jax.models.backbones import vovnet, vovnet_weights
from test_resnet_weights import _assert_close, _images, _randomised, _state


def _reference(name: str, seed: int, **kwargs) -> torch.nn.Module:
  """timm's model with random BatchNorms (affine and statistics) and biases."""
  return _reference_from(timm.create_model(name, **kwargs), seed)


def _reference_from(model: torch.nn.Module, seed: int) -> torch.nn.Module:
  model = _randomised(model, seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and m.bias is not None:
        m.bias.normal_(0.0, 0.5)  # The eSE gates and the head.
  return model


def _nhwc(x: np.ndarray) -> jnp.ndarray:
  return jnp.asarray(x.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("size", [
    (224, 224),  # 56 -> 28 -> 14 -> 7.
    (97, 131),   # Odd sides: 25x33 -> 12x16 -> 6x8 -> 3x4 by the ceil-mode pools.
])
def test_ese_vovnet19b_dw_logits_equal_timm(size):
  """Depthwise-separable stem and blocks, reduction convs, eSE."""
  reference = _reference("ese_vovnet19b_dw", seed=size[0], num_classes=10)
  variables = vovnet_weights.convert_state_dict(_state(reference))
  x = _images((1, 3, *size), seed=size[1])
  with torch.no_grad():
    want = reference(torch.from_numpy(x)).numpy()
  model = vovnet.ese_vovnet19b_dw(num_classes=10)
  got, _ = jax.jit(model.apply)(variables, _nhwc(x))
  _assert_close(got, want)


def test_ese_vovnet39b_logits_equal_timm_at_its_default_size():
  """The full `b` model: 5 convs per block, residuals on second blocks, eSE."""
  reference = _reference("ese_vovnet39b", seed=7, num_classes=10)
  variables = vovnet_weights.convert_state_dict(_state(reference))
  x = _images((1, 3, 224, 224), seed=7)
  with torch.no_grad():
    want = reference(torch.from_numpy(x)).numpy()
  got, _ = jax.jit(vovnet.ese_vovnet39b(num_classes=10).apply)(variables, _nhwc(x))
  _assert_close(got, want)


def test_v1_logits_equal_timms_vovnet_without_residual_or_ese():
  """The `a` models' path (plain OSA blocks, no residual, no eSE, 2-block stages)
  on a narrow timm VovNet, cheaper than vovnet39a itself."""
  cfg = {"stem_chs": [16, 16, 32], "stage_conv_chs": [16, 16, 24, 24],
         "stage_out_chs": [32, 48, 64, 80], "layer_per_block": 3, "block_per_stage": [1, 2, 1, 2],
         "residual": False, "depthwise": False, "attn": ""}
  torch.manual_seed(6)
  reference = _reference_from(timm.models.vovnet.VovNet(cfg, num_classes=10), seed=6)
  variables = vovnet_weights.convert_state_dict(_state(reference))
  x = _images((1, 3, 65, 79), seed=6)  # 17x20 -> 8x10 -> 4x5 -> 2x2.
  with torch.no_grad():
    want = reference(torch.from_numpy(x)).numpy()
  model = vovnet.vovnet39a(num_classes=10, blocks=(1, 2, 1, 2), layers=3,
                           stem_features=(16, 16, 32), mid_features=(16, 16, 24, 24),
                           out_features=(32, 48, 64, 80))
  got, _ = jax.jit(model.apply)(variables, _nhwc(x))
  _assert_close(got, want)


@pytest.mark.parametrize("name", ["vovnet39a", "vovnet57a", "ese_vovnet19b_dw", "ese_vovnet39b",
                                  "ese_vovnet57b"])
def test_every_timm_model_converts_to_its_constructor(name):
  reference = timm.create_model(name)
  variables = vovnet_weights.convert_state_dict(_state(reference))
  model = getattr(vovnet, name)()
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))
  assert jax.tree.map(np.shape, variables) == jax.tree.map(np.shape, shapes)
  params = sum(p.size for p in jax.tree.leaves(variables["params"]))
  assert params == sum(p.numel() for p in reference.parameters())


def test_feature_levels_equal_timm_features_only_and_their_declaration():
  """ese_vovnet39b: residuals on second blocks, eSE on last blocks, all five maps."""
  reference = _reference("ese_vovnet39b", seed=3, features_only=True)  # Keys stem_0., stages_0.
  assert reference.feature_info.reduction() == [2, 4, 8, 16, 32]
  backbone = vovnet.ese_vovnet39b(features_only=True, stem_level=True)
  weights = vovnet_weights.convert(_state(reference), backbone)
  assert weights.droppable == ("params/head",) and "head" not in weights.variables["params"]
  x = _images((1, 3, 97, 131), seed=4)
  with torch.no_grad():
    want = [t.numpy().transpose(0, 2, 3, 1) for t in reference(torch.from_numpy(x))]
  levels, _ = jax.jit(backbone.apply)(weights.variables, _nhwc(x))
  declared = backbone.feature_levels()
  assert list(levels) == list(declared) == ["C1", "C2", "C3", "C4", "C5"]
  assert [(level.stride, level.channels) for level in declared.values()] == list(zip(
      reference.feature_info.reduction(), reference.feature_info.channels()))
  for (name, level), ref in zip(declared.items(), want):
    assert levels[name].shape == ref.shape and levels[name].shape[-1] == level.channels
    _assert_close(levels[name], ref)


def test_a_saved_state_dict_loads_through_convert_load(tmp_path):
  reference = _reference("ese_vovnet19b_dw", seed=5, num_classes=4)
  path = tmp_path / "ese_vovnet19b_dw.pth"
  torch.save(reference.state_dict(), path)
  weights = convert.load(str(path), vovnet.ese_vovnet19b_dw(num_classes=4))
  want = vovnet_weights.convert_state_dict(_state(reference))
  assert jax.tree.structure(weights.variables) == jax.tree.structure(want)
  for got, ref in zip(jax.tree.leaves(weights.variables), jax.tree.leaves(want)):
    np.testing.assert_array_equal(got, ref)
  assert weights.variables["params"]["stem1"]["conv_dw"]["kernel"].shape == (3, 3, 1, 64)


def test_a_state_dict_that_does_not_fit_is_named():
  base = _state(timm.create_model("ese_vovnet19b_dw", num_classes=3))
  state = dict(base)
  del state["stages.2.blocks.0.attn.fc.bias"]
  with pytest.raises(ConversionError,
                     match=r"1 missing keys \['stages.2.blocks.0.attn.fc.bias'\]"):
    vovnet_weights.convert_state_dict(state)
  state = {**base, "stages.1.blocks.0.extra.weight": np.zeros(3, np.float32)}
  with pytest.raises(ConversionError, match=r"1 unused keys \['stages.1.blocks.0.extra.weight'\]"):
    vovnet_weights.convert_state_dict(state)
  state = {**base, "stages.0.blocks.0.conv_mid.1.conv_dw.weight": np.zeros((128, 1, 5, 5),
                                                                             np.float32)}
  with pytest.raises(ConversionError, match=r"stages.0.blocks.0.conv_mid.1.conv_dw.weight: "
                                            r"converted shape \(5, 5, 1, 128\)"):
    vovnet_weights.convert_state_dict(state)
  with pytest.raises(ConversionError, match="Not a timm VoVNet"):
    vovnet_weights.convert_state_dict({"conv1.weight": np.zeros((2, 2))})
