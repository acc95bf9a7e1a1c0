"""Poincaré ResNet: exact sizes, custom VJPs vs autodiff, configs, and the digits demo."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import config as config_lib
from vision_jax.models import poincare_resnet as pr

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "poincare", "cifar.py")


def load_config(arg=None):
  return config_lib.load(f"{CONFIG}:{arg or ''}")


def count(model, shape=(1, 32, 32, 3)):
  params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros(shape)))["params"]
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


# Hyperbolic 8-16-32 ResNet-20, 10 classes, by hand: a Poincaré conv has K*Cin*Cout + Cout
# parameters, a Poincaré batch norm C + 1 (mean, var):
#   stem 224 + 9; group 1: 3 x (2 x 584 + 2 x 9) = 3,558;
#   group 2: 1,168 + 2,320 + 34 + 144 (1x1 shortcut) + 2 x (2 x 2,320 + 34) = 13,014;
#   group 3: 4,640 + 9,248 + 66 + 544 + 2 x (2 x 9,248 + 66) = 51,622; head 32 x 10 + 10 = 330.
# ResNet-32, 100 classes: 233 + 5 x 1,186 + (3,666 + 4 x 4,674) + (14,498 + 4 x 18,562) + 3,300.
# The Euclidean twin has BatchNorm's 2C where the Poincaré norm has C + 1: + 7 + 6 x (7 + 15 + 31).
@pytest.mark.parametrize("ctor, classes, expected", [
    (pr.hyperbolic_resnet20, 10, 68_757),
    (pr.hyperbolic_resnet32, 100, 120_571),
    (pr.euclidean_resnet20, 10, 69_082),
    (pr.hybrid_resnet20, 10, 69_082),
])
def test_exact_parameter_counts(ctor, classes, expected):
  assert count(ctor(num_classes=classes)) == expected


def test_custom_vjps_equal_autodiff_on_a_batch():
  x = jax.random.normal(jax.random.PRNGKey(0), (6, 16, 16, 3))
  labels = jax.nn.one_hot(jnp.arange(6) % 10, 10)
  # Depth 8 (one block per group) keeps compilation short; the layers are those of depth 20.
  custom = pr.CifarResNet(num_classes=10, depth=8, learnable_c=True)
  plain = pr.CifarResNet(num_classes=10, depth=8, learnable_c=True, custom_grads=False)
  variables = custom.init(jax.random.PRNGKey(1), x)

  def loss(model):
    def fn(params):
      (logits, _), _ = model.apply({**variables, "params": params}, x, train=True,
                                   mutable=["batch_stats"])
      return -jnp.mean(jnp.sum(labels * jax.nn.log_softmax(logits), -1))
    return jax.jit(jax.value_and_grad(fn))(variables["params"])

  (l_custom, g_custom), (l_plain, g_plain) = loss(custom), loss(plain)
  assert l_custom == l_plain  # Same forward.
  for a, b in zip(jax.tree.leaves(g_custom), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-6)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(g_custom))


def test_config_variants_and_errors():
  c = load_config("variant=cifar100,model=hybrid,depth=32")
  assert (c.model.name, c.model.num_classes, c.data.name) == ("hybrid_resnet32", 100, "cifar100")
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.weight_decay) == (
      "adam", 1e-3, 1e-4)
  assert c.data.batch_size == 128 and c.total_epochs == 100
  assert "pad(4)|random_crop(32)|flip_lr" in c.data.pp_train
  assert load_config("autodiff=True").model.custom_grads is False
  config_lib.validate(load_config())
  with pytest.raises(config_lib.ConfigError, match="model='poincare'"):
    load_config("model=poincare")
  with pytest.raises(config_lib.ConfigError, match="depth=44"):
    load_config("depth=44")


