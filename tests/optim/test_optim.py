"""Schedules, weight-decay masks, clipping and gradient accumulation."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax import config as config_lib
from vision_jax import steps
from vision_jax.optim import builder, schedules


def test_cosine_with_warmup_values():
  fn = schedules.cosine(peak=1.0, total=110, warmup=10, end_factor=0.1)
  np.testing.assert_allclose([fn(0), fn(5), fn(10), fn(60), fn(110)],
                             [0.0, 0.5, 1.0, 0.55, 0.1], atol=1e-6)


def test_step_schedule_boundaries():
  fn = schedules.step(peak=0.4, total=100, warmup=0, boundaries=(0.5, 0.75), decay_factor=0.1)
  np.testing.assert_allclose([fn(49), fn(50), fn(74), fn(75)], [0.4, 0.04, 0.04, 0.004], rtol=1e-6)


def test_mmdet_1x_schedule_warmup_ratio_and_steps():
  # mmdet 1x: linear warmup over 500 iters from 0.001 x lr, x0.1 after epochs 8 and 11 of 12.
  total = 12 * 100
  fn = schedules.step(peak=1e-4, total=total, warmup=500, boundaries=(8 / 12, 11 / 12),
                      decay_factor=0.1, warmup_start_factor=0.001)
  np.testing.assert_allclose([fn(0), fn(250), fn(500), fn(799), fn(800), fn(1099), fn(1100)],
                             [1e-7, 1e-4 * (0.001 + 0.999 * 0.5), 1e-4, 1e-4, 1e-5, 1e-5, 1e-6],
                             rtol=1e-5)


def test_decay_mask_excludes_bias_and_norm_scale():
  params = {"conv": {"kernel": 1, "bias": 2}, "bn": {"scale": 3}}
  mask = builder.decay_mask(params, r".*(bias|scale)$")
  assert mask == {"conv": {"kernel": True, "bias": False}, "bn": {"scale": False}}


def _opt_cfg(**kw):
  c = config_lib.base_config().optimizer
  c.update(kw)
  return c


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "lamb", "rmsprop"])
def test_weight_decay_respects_mask(name):
  params = {"w": jnp.ones(3), "bias": jnp.ones(3)}
  tx = builder.make_optimizer(_opt_cfg(name=name, weight_decay=0.5, learning_rate=0.1),
                              optax.constant_schedule(0.1), params)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  assert np.all(np.asarray(updates["w"]) < 0)  # Decayed towards zero with zero gradient.
  np.testing.assert_array_equal(updates["bias"], 0.0)


def test_grad_clipping():
  params = {"w": jnp.zeros(4)}
  tx = builder.make_optimizer(_opt_cfg(name="sgd", momentum=0.0, grad_clip_norm=1.0),
                              optax.constant_schedule(1.0), params)
  updates, _ = tx.update({"w": jnp.full(4, 10.0)}, tx.init(params), params)
  np.testing.assert_allclose(optax.global_norm(updates), 1.0, rtol=1e-6)


class _Linear(nn.Module):
  @nn.compact
  def __call__(self, x, *, train):
    return nn.Dense(3)(x.reshape(x.shape[0], -1)), {}


def test_accumulation_matches_full_batch():
  """Micro-batches with different numbers of real examples: the loss is still
  the mean over the whole batch's real examples."""
  from vision_jax.tasks.classification.task import ClassificationTask  # pylint: disable=import-outside-toplevel
  model, task = _Linear(), ClassificationTask()
  tx = optax.sgd(0.1)
  init = steps.make_init(model, tx, (jax.ShapeDtypeStruct((2, 2, 1), jnp.float32),), seed=0)
  rng = np.random.default_rng(0)
  mask = jnp.asarray([1, 0, 1, 1, 0, 1, 1, 1], jnp.float32)  # Micro-batch i: rows i and i + 4.
  batch = {"image": jnp.asarray(rng.normal(size=(8, 2, 2, 1)), jnp.float32),
           "labels": jax.nn.one_hot(rng.integers(0, 3, 8), 3),
           "mask": mask, "skipped": jnp.zeros(8, jnp.int32)}
  sched = optax.constant_schedule(0.1)
  full, m1 = jax.jit(steps.make_train_step(model, task, tx, sched, 1))(init(), batch)
  accum, m2 = jax.jit(steps.make_train_step(model, task, tx, sched, 4))(init(), batch)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6),
               full["params"], accum["params"])
  np.testing.assert_allclose(m1["train/loss"], m2["train/loss"], rtol=1e-6)
  assert not np.allclose(full["params"]["Dense_0"]["kernel"], init()["params"]["Dense_0"]["kernel"])


def test_adam_with_l2_equals_torch_adam():
  """`adam` decays like torch.optim.Adam(weight_decay=...): L2 added to the gradient."""
  import torch  # pylint: disable=import-outside-toplevel  # Installed by the test extra.
  w0 = np.array([0.5, -1.0, 2.0], np.float32)
  grads = [np.array([0.1, 0.2, -0.3], np.float32), np.array([-0.2, 0.05, 0.4], np.float32)]
  params = {"w": jnp.asarray(w0)}
  tx = builder.make_optimizer(_opt_cfg(name="adam", weight_decay=0.1, weight_decay_exclude=""),
                              optax.constant_schedule(0.01), params)
  state = tx.init(params)
  tw = torch.tensor(w0, requires_grad=True)
  opt = torch.optim.Adam([tw], lr=0.01, weight_decay=0.1)
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
    params = optax.apply_updates(params, updates)
    tw.grad = torch.tensor(g)
    opt.step()
  np.testing.assert_allclose(params["w"], tw.detach().numpy(), rtol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_rmsprop_is_tensorflows(momentum):
  """TF's RMSProp (the Inception recipe: decay 0.9, eps 1.0): ms from 1,
  ms = rho ms + (1 - rho) g^2, mom = momentum mom + lr g / sqrt(ms + eps)."""
  w = np.array([0.5, -1.0, 2.0])
  grads = [np.array([0.1, 2.0, -0.3]), np.array([-0.2, 0.05, 4.0]), np.array([1.0, -1.0, 0.5])]
  params = {"w": jnp.asarray(w, jnp.float32)}
  tx = builder.make_optimizer(_opt_cfg(name="rmsprop", b2=0.9, eps=1.0, momentum=momentum),
                              optax.constant_schedule(0.045), params)
  state = tx.init(params)
  ms, mom = np.ones(3), np.zeros(3)
  for g in grads:
    updates, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, params)
    params = optax.apply_updates(params, updates)
    ms = 0.9 * ms + 0.1 * g**2
    mom = momentum * mom + 0.045 * g / np.sqrt(ms + 1.0)
    w = w - mom
  np.testing.assert_allclose(params["w"], w, rtol=1e-6)
