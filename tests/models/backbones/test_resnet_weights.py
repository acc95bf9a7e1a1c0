"""ResNet weights from torchvision and timm: logits and feature levels equal the
PyTorch models' on random weights, and a mismatched state dict is named."""
import jax.numpy as jnp
import numpy as np
import pytest
import timm  # Reference implementations: installed by the `test` extra.
import torch
import torchvision

from vision_jax.convert import ConversionError
from vision_jax.models.backbones import resnet, resnet_weights


def _randomised(model: torch.nn.Module, seed: int) -> torch.nn.Module:
  """Random BatchNorm affine and statistics, so a swapped or skipped tensor shows."""
  torch.manual_seed(seed)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.2)
        m.running_mean.normal_(0.0, 0.2)
        m.running_var.uniform_(0.5, 2.0)
  return model.eval()


def _state(model: torch.nn.Module) -> dict:
  return {k: v.numpy() for k, v in model.state_dict().items()}


def _images(shape, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _assert_close(got, want, rtol=1e-4):
  """Equal to within 1e-4 of the reference's own scale (float32 over 50 layers)."""
  got, want = np.asarray(got), np.asarray(want)
  assert got.shape == want.shape
  assert np.max(np.abs(got - want)) <= rtol * max(1.0, float(np.max(np.abs(want)))), (
      np.max(np.abs(got - want)), np.max(np.abs(want)))


@pytest.mark.parametrize("size", [(64, 64), (72, 56)])
def test_torchvision_resnet50_logits(size):
  reference = _randomised(torchvision.models.resnet50(num_classes=10), seed=0)
  variables = resnet_weights.convert_state_dict(_state(reference))
  x = _images((2, 3, *size))
  with torch.no_grad():
    want = reference(torch.from_numpy(x)).numpy()
  got, _ = resnet.resnet50(num_classes=10).apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  _assert_close(got, want)


def test_timm_resnet50d_logits_deep_stem_and_pooled_shortcuts():
  reference = _randomised(timm.create_model("resnet50d", num_classes=7), seed=1)
  variables = resnet_weights.convert_state_dict(_state(reference))
  assert "stem_conv2" in variables["params"] and "conv" in \
      variables["params"]["stage2_block1"]["shortcut"]
  x = _images((2, 3, 64, 64), seed=1)
  with torch.no_grad():
    want = reference(torch.from_numpy(x)).numpy()
  got, _ = resnet.resnet50d(num_classes=7).apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  _assert_close(got, want)


def test_feature_levels_equal_torchvision_stage_outputs_and_their_declaration():
  reference = _randomised(torchvision.models.resnet18(), seed=2)
  weights = resnet_weights.convert(_state(reference), resnet.resnet18(features_only=True))
  backbone = resnet.resnet18(features_only=True)
  x = _images((1, 3, 64, 96), seed=2)
  with torch.no_grad():
    t = torch.from_numpy(x)
    t = reference.maxpool(reference.relu(reference.bn1(reference.conv1(t))))
    stages = []
    for layer in (reference.layer1, reference.layer2, reference.layer3, reference.layer4):
      t = layer(t)
      stages.append(t.numpy().transpose(0, 2, 3, 1))
  variables = dict(weights.variables)
  variables["params"] = {k: v for k, v in variables["params"].items() if k != "head"}
  levels, _ = backbone.apply(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  declared = backbone.feature_levels()
  assert list(levels) == list(declared) == ["C2", "C3", "C4", "C5"]
  for (name, level), want in zip(declared.items(), stages):
    assert levels[name].shape == (1, 64 // level.stride, 96 // level.stride, level.channels)
    _assert_close(levels[name], want)
  assert weights.droppable == ("params/head",)


def test_a_state_dict_that_does_not_fit_is_named():
  state = _state(torchvision.models.resnet18())
  del state["layer3.1.bn2.running_var"]
  with pytest.raises(ConversionError, match=r"1 missing keys \['layer3.1.bn2.running_var'\]"):
    resnet_weights.convert_state_dict(state)
  state = _state(torchvision.models.resnet18())
  state["layer2.0.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ConversionError, match=r"1 unused keys \['layer2.0.extra.weight'\]"):
    resnet_weights.convert_state_dict(state)
  state = _state(torchvision.models.resnet18())
  state["layer1.0.conv2.weight"] = np.zeros((64, 64, 5, 5), np.float32)
  with pytest.raises(ConversionError, match=r"layer1.0.conv2.weight: converted shape \(5, 5, 64, 64\)"):
    resnet_weights.convert_state_dict(state)
  with pytest.raises(ConversionError, match="Not a torchvision/timm ResNet"):
    resnet_weights.convert_state_dict({"patch_embed1.proj.weight": np.zeros((2, 2))})
