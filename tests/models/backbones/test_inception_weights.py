"""Inception-v4 / Inception-ResNet-v2 weights from timm: logits and the five
feature levels equal the PyTorch models' on random weights at 299 and 107
pixels, a mismatched state dict is named, and a saved .pth loads."""
import contextlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import timm  # Reference implementations: installed by the `test` extra.
import torch

from vision_jax import convert
from vision_jax.convert import ConversionError
from vision_jax.models.backbones import inception, inception_weights
from test_resnet_weights import _assert_close, _images, _randomised, _state

CTORS = {"inception_v4": inception.inception_v4,
         "inception_resnet_v2": inception.inception_resnet_v2}
# timm's feature taps (zoo.md section 1), strides 2 .. 32.
TAPS = {"inception_v4": ("features.2", "features.3", "features.9", "features.17", "features.21"),
        "inception_resnet_v2": ("conv2d_2b", "conv2d_4a", "repeat", "repeat_1", "conv2d_7b")}


def _reference(name: str, seed: int) -> torch.nn.Module:
  """timm model with He-normal convs (so the signal neither dies nor explodes over
  ~100 layers), random biases and random BatchNorm affine and statistics."""
  torch.manual_seed(seed)
  model = timm.create_model(name, num_classes=10)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
        torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
          m.bias.normal_(0.0, 0.2)
  return _randomised(model, seed)


def _converted(name):
  """(name, timm model, its converted variables)."""
  model = _reference(name, seed=len(name))
  return name, model, inception_weights.convert_state_dict(_state(model))


@pytest.fixture(scope="module")
def v4():
  return _converted("inception_v4")


@pytest.fixture(scope="module")
def irv2():
  return _converted("inception_resnet_v2")


@contextlib.contextmanager
def _one_thread():
  """PyTorch on one thread: its spinning workers slow a busy machine many times over."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  try:
    with torch.no_grad():
      yield
  finally:
    torch.set_num_threads(threads)


def _torch_forward(model, name, x):
  """Logits and the tapped feature maps (NHWC) of one forward."""
  taps = []
  hooks = [model.get_submodule(m).register_forward_hook(
      lambda _, __, out: taps.append(out.numpy().transpose(0, 2, 3, 1))) for m in TAPS[name]]
  with _one_thread():
    logits = model(torch.from_numpy(x)).numpy()
  for h in hooks:
    h.remove()
  return logits, taps


# Both networks at their default 299 and at a small size.
@pytest.mark.parametrize("which, size", [("v4", 299), ("v4", 107), ("irv2", 299), ("irv2", 107)])
def test_logits_and_feature_levels_equal_timm(which, size, request):
  name, model, variables = request.getfixturevalue(which)
  x = _images((1, 3, size, size), seed=size)
  want, taps = _torch_forward(model, name, x)
  net = CTORS[name](num_classes=10)
  got, aux = jax.jit(net.apply)(variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  assert np.std(want) > 0.1  # A signal that survived every layer.
  _assert_close(got, want)
  declared = net.feature_levels()
  assert list(declared) == ["C1", "C2", "C3", "C4", "C5"]
  for (level_name, level), tap in zip(declared.items(), taps):
    assert tap.shape[-1] == level.channels
    _assert_close(aux[level_name], tap)


def _shallow_v4(model) -> torch.nn.Module:
  """The timm network's stem, 1 x A, Reduction-A, 1 x B, Reduction-B, 1 x C and head."""
  keep = [*range(6), 6, 10, 11, 18, 19]
  return torch.nn.ModuleDict({"features": torch.nn.Sequential(*[model.features[i] for i in keep]),
                              "last_linear": model.last_linear})


def _shallow_irv2_state(model) -> dict:
  """The state dict without all but 1, 2 and 1 of the Block35, Block17 and Block8 repeats."""
  kept = {"repeat": 1, "repeat_1": 2, "repeat_2": 1}
  return {k: v for k, v in _state(model).items()
          if not (m := re.match(r"(repeat(?:_\d)?)\.(\d+)\.", k)) or int(m[2]) < kept[m[1]]}


def test_a_shallow_inception_v4_converts_with_its_repeats(v4):
  """Repeat counts are read from the keys; a trimmed timm network still matches."""
  model = v4[1]
  shallow = _shallow_v4(model)
  _, arch = inception_weights.infer_architecture(_state(shallow))
  assert arch == {"blocks": (1, 1, 1), "num_classes": 10}
  variables = inception_weights.convert_state_dict(_state(shallow))
  x = _images((1, 3, 75, 75), seed=3)
  with _one_thread():
    want = model.forward_head(shallow["features"](torch.from_numpy(x))).numpy()
  got, _ = jax.jit(inception.inception_v4(num_classes=10, blocks=(1, 1, 1)).apply)(
      variables, jnp.asarray(x.transpose(0, 2, 3, 1)))
  _assert_close(got, want)


def test_a_state_dict_that_does_not_fit_is_named(v4, irv2):
  state = _state(_shallow_v4(v4[1]))
  del state["features.6.branch2.1.bn.running_var"]
  with pytest.raises(ConversionError,
                     match=r"1 missing keys \['features.6.branch2.1.bn.running_var'\]"):
    inception_weights.convert_state_dict(state)
  state = _shallow_irv2_state(irv2[1])
  del state["repeat_1.1.conv2d.bias"]
  state["mixed_6a.extra.weight"] = np.zeros(3, np.float32)
  with pytest.raises(ConversionError, match=r"1 missing keys \['repeat_1.1.conv2d.bias'\]; "
                     r"1 unused keys \['mixed_6a.extra.weight'\]"):
    inception_weights.convert_state_dict(state)
  state = _shallow_irv2_state(irv2[1])
  state["mixed_5b.branch1.1.conv.weight"] = np.zeros((64, 48, 7, 1), np.float32)
  with pytest.raises(ConversionError,
                     match=r"mixed_5b.branch1.1.conv.weight: converted shape \(7, 1, 48, 64\)"):
    inception_weights.convert_state_dict(state)
  with pytest.raises(ConversionError, match="Not a timm Inception"):
    inception_weights.convert_state_dict({"conv1.weight": np.zeros((2, 2))})


def test_a_shallow_irv2_saved_as_pth_loads_with_its_repeats(irv2, tmp_path):
  """torch.save -> vision_jax.convert.load (the family converter, by the model's module)."""
  _, model, variables = irv2
  state = {k: torch.from_numpy(v) for k, v in _shallow_irv2_state(model).items()}
  torch.save(state, tmp_path / "irv2.pth")
  target = inception.inception_resnet_v2(blocks=(1, 2, 1), features_only=True)
  weights = convert.load(str(tmp_path / "irv2.pth"), target)
  assert weights.droppable == ("params/head",)
  params = weights.variables["params"]
  assert {"block35_1", "block17_2", "block8_1", "block8_last", "head"} <= set(params)
  assert "block17_3" not in params and "block35_2" not in params
  loaded = jax.tree_util.tree_flatten_with_path(weights.variables)[0]
  assert len(loaded) == len(state) - sum(k.endswith("num_batches_tracked") for k in state)
  for path, leaf in loaded:  # The same tensors as in the whole network's conversion.
    want = variables
    for p in path:
      want = want[p.key]
    np.testing.assert_array_equal(leaf, want)
