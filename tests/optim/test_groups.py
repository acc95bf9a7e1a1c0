"""Optimizer parameter groups (frozen, lr factors, per-group optimizers) and the
transform list: each entry a name plus arguments validated before compute."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax import config as config_lib
from vision_jax.optim import builder
from tiny_config import tiny_config

PARAMS = {"backbone": {"stem_conv": {"kernel": jnp.ones((3, 3))},
                       "stage2_block1": {"conv1": {"kernel": jnp.ones((3, 3))}}},
          "head": {"kernel": jnp.ones((3, 3)), "bias": jnp.ones(3)}}


def _cfg(**kw):
  c = config_lib.base_config().optimizer
  c.update(kw)
  return c


def _one_step(tx, grads=None):
  grads = grads or jax.tree.map(jnp.ones_like, PARAMS)
  updates, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
  return updates


def test_frozen_group_and_lr_factor_against_plain_sgd():
  cfg = _cfg(name="sgd", momentum=0.0, groups=(
      (r"backbone/stem_.*", {"name": "frozen"}),
      (r"backbone/.*", {"name": "sgd", "lr_factor": 0.1})))
  updates = _one_step(builder.make_optimizer(cfg, optax.constant_schedule(0.5), PARAMS))
  np.testing.assert_array_equal(updates["backbone"]["stem_conv"]["kernel"], 0.0)
  np.testing.assert_allclose(updates["backbone"]["stage2_block1"]["conv1"]["kernel"], -0.05)
  np.testing.assert_allclose(updates["head"]["kernel"], -0.5)


def test_a_group_inherits_the_top_level_settings_its_factory_takes():
  cfg = _cfg(name="sgd", momentum=0.0, weight_decay=0.0, b1=0.5,
             groups=((r"head/.*", {"name": "adam", "lr_factor": 2.0}),))
  tx = builder.make_optimizer(cfg, optax.constant_schedule(0.1), PARAMS)
  grads = jax.tree.map(lambda p: 3.0 * jnp.ones_like(p), PARAMS)
  head = _one_step(tx, grads)["head"]
  want, _ = optax.adam(0.2, b1=0.5, b2=0.999, eps=1e-8).update(
      grads["head"], optax.adam(0.2, b1=0.5).init(PARAMS["head"]))
  jax.tree.map(np.testing.assert_allclose, head, want)


def test_groups_and_transforms_are_validated_before_compute():
  c = tiny_config(**{"optimizer.groups": ((r"head/.*", {"name": "adamw", "beta1": 0.9}),)})
  with pytest.raises(config_lib.ConfigError,
                     match=r"Unknown config key 'optimizer.groups\[0\].beta1'. Did you mean 'b1'"):
    config_lib.validate(c)
  c = tiny_config(**{"optimizer.groups": ((r"head/(", {"name": "sgd"}),)})
  with pytest.raises(config_lib.ConfigError, match=r"'optimizer.groups\[0\]' = .*: bad regex"):
    config_lib.validate(c)
  c = tiny_config(**{"optimizer.transforms": ({"name": "clip_by_global_norm", "norm": 1.0},)})
  with pytest.raises(config_lib.ConfigError,
                     match=r"'optimizer.transforms\[0\].norm'.*Did you mean 'max_norm'"):
    config_lib.validate(c)
  c = tiny_config(**{"optimizer.transforms": ({"name": "clip_by_norm"},)})
  with pytest.raises(config_lib.ConfigError, match=r"optimizer.transforms\[0\].name.*"
                                                   r"Did you mean 'clip_by_global_norm'"):
    config_lib.validate(c)


def test_a_group_that_claims_no_parameter_is_an_error():
  cfg = _cfg(groups=((r"head/.*", {"name": "sgd"}), (r"head/kernel", {"name": "frozen"})))
  with pytest.raises(config_lib.ConfigError, match=r"'optimizer.groups\[1\]' = 'head/kernel' "
                                                   "matches no parameter"):
    builder.make_optimizer(cfg, optax.constant_schedule(0.1), PARAMS)


def test_transforms_wrap_in_order():
  cfg = _cfg(name="sgd", momentum=0.0, transforms=(
      {"name": "zero_nans"}, {"name": "clip_by_global_norm", "max_norm": 1.0}))
  tx = builder.make_optimizer(cfg, optax.constant_schedule(1.0), PARAMS)
  grads = jax.tree.map(lambda p: 10.0 * jnp.ones_like(p), PARAMS)
  grads["head"]["bias"] = jnp.asarray([jnp.nan, 10.0, 10.0])
  updates = _one_step(tx, grads)
  # The clip (outermost) sees the NaN first: its norm is NaN, so is every entry, and
  # zero_nans after it zeroes them all. Reversed, the NaN is zeroed before the clip.
  assert all(np.all(np.asarray(u) == 0.0) for u in jax.tree.leaves(updates))
  cfg.transforms = cfg.transforms[::-1]
  updates = _one_step(builder.make_optimizer(cfg, optax.constant_schedule(1.0), PARAMS), grads)
  np.testing.assert_allclose(optax.global_norm(updates), 1.0, rtol=1e-6)
  assert float(updates["head"]["bias"][0]) == 0.0
