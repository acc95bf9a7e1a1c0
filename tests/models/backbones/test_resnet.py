"""ResNet / ResNet-D: exact parameter counts (timm/torchvision) and shapes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.backbones import resnet


def _count(model, size=224):
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, size, size, 3)), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("ctor, expected", [
    (resnet.resnet18, 11_689_512),   # torchvision resnet18
    (resnet.resnet34, 21_797_672),   # torchvision resnet34
    (resnet.resnet50, 25_557_032),   # torchvision resnet50
    (resnet.resnet101, 44_549_160),  # torchvision resnet101
    (resnet.resnet18d, 11_708_744),  # timm resnet18d
    (resnet.resnet50d, 25_576_264),  # timm resnet50d
])
def test_parameter_counts(ctor, expected):
  assert _count(ctor(num_classes=1000)) == expected


def test_outputs_and_aux_shapes():
  model = resnet.resnet18d(num_classes=7, width=8)
  x = jnp.ones((2, 64, 64, 3))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  logits, aux = model.apply(variables, x, train=False)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  assert aux["stem"].shape == (2, 16, 16, 8)
  assert [aux[f"stage{i}"].shape[1:] for i in range(1, 5)] == [
      (16, 16, 8), (8, 8, 16), (4, 4, 32), (2, 2, 64)]
  assert aux["pre_logits"].shape == (2, 64)


def test_bfloat16_compute_keeps_float32_params():
  model = resnet.resnet18(num_classes=3, width=8, small_input=True, dtype=jnp.bfloat16)
  x = jnp.ones((1, 8, 8, 1))
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  _, aux = model.apply(variables, x, train=False)
  assert aux["stage4"].dtype == jnp.bfloat16


def test_train_mode_updates_batch_stats():
  model = resnet.resnet18(num_classes=3, width=4, small_input=True, stage_sizes=(1,))
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 8, 8, 1)) * 3 + 2
  variables = model.init(jax.random.PRNGKey(0), x, train=False)
  _, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
  before = variables["batch_stats"]["stem_bn"]["mean"]
  after = updated["batch_stats"]["stem_bn"]["mean"]
  assert not np.allclose(before, after)
