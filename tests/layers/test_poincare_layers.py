"""Poincaré layers: HNN++ FC, beta-concatenation conv, midpoint batch norm, residual."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from vision_jax.geometry.poincare import PoincareBall
from vision_jax.layers import poincare as hyp

BALL = PoincareBall()


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def ball_points(seed, shape, c, radius=0.8):
  v = np.random.default_rng(seed).standard_normal(shape)
  v /= np.linalg.norm(v, axis=-1, keepdims=True)
  return jnp.asarray(v * np.random.default_rng(seed + 1).uniform(0, radius, shape[:-1] + (1,))
                     / np.sqrt(c))


def hnnpp_reference(x, z, r, c):
  """HNN++ Eqs. 6 and 9 written per output unit with NumPy loops."""
  out = np.zeros(z.shape[1])
  lam = 2 / (1 - c * x @ x)
  for k in range(z.shape[1]):
    zn = np.linalg.norm(z[:, k])
    arg = (math.sqrt(c) * lam * (x @ z[:, k]) / zn * math.cosh(2 * math.sqrt(c) * r[k])
           - (lam - 1) * math.sinh(2 * math.sqrt(c) * r[k]))
    v = 2 * zn / math.sqrt(c) * math.asinh(arg)
    out[k] = math.sinh(math.sqrt(c) * v) / math.sqrt(c)
  return out / (1 + math.sqrt(1 + c * out @ out))


def test_fully_connected_equals_the_hnnpp_formula():
  c = 0.4
  x = np.asarray(ball_points(0, (5, 6), c, radius=0.5))
  rng = np.random.default_rng(1)
  z, r = rng.standard_normal((6, 4)) * 0.3, rng.standard_normal(4) * 0.2
  got = hyp.fully_connected(BALL, jnp.asarray(x), jnp.asarray(z), jnp.asarray(r), c)
  want = np.stack([hnnpp_reference(row, z, r, c) for row in x])
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n_in, n_out", [(6, 6), (4, 7)])
def test_identity_init_returns_its_input(n_in, n_out):
  """z = I/2, r = 0 is the identity with lambda = 2/(1 - c||x||^2) (zero columns for
  n_out > n_in give zero outputs and finite gradients)."""
  c = 0.1
  layer = hyp.PoincareLinear(n_out, c=c)
  x = jnp.asarray(np.random.default_rng(2).standard_normal((8, n_in)))
  params = layer.init(jax.random.PRNGKey(0), x)
  y = layer.apply(params, x)
  np.testing.assert_allclose(y[:, :n_in], x, rtol=1e-12, atol=1e-13)
  np.testing.assert_allclose(y[:, n_in:], 0, atol=1e-13)
  grads = jax.grad(lambda p, x: jnp.sum(layer.apply(p, x) ** 2), (0, 1))(params, x)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  zero_grads = jax.grad(lambda p: jnp.sum(layer.apply(p, jnp.zeros_like(x))))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(zero_grads))


def test_official_conformal_factor_breaks_the_identity():
  """With the official code's lambda = 2(1 - c||x||^2) the identity init is not the identity."""
  c, x = 1.0, ball_points(3, (4, 5), 1.0, radius=0.6)
  z = 0.5 * jnp.eye(5)
  x2 = jnp.sum(x * x, -1, keepdims=True)
  right, wrong = 2 / (1 - c * x2), 2 * (1 - c * x2)
  np.testing.assert_allclose(hyp.hnnpp_fc(x @ z, right, z, None, c, BALL), x, atol=1e-13)
  assert np.abs(hyp.hnnpp_fc(x @ z, wrong, z, None, c, BALL) - x).max() > 1e-2


def test_fully_connected_gradients_match_finite_differences():
  c = jnp.asarray(0.6)
  x = ball_points(4, (3, 5), 0.6, radius=0.7)
  rng = np.random.default_rng(5)
  z, r = jnp.asarray(rng.standard_normal((5, 4)) * 0.4), jnp.asarray(rng.standard_normal(4) * .1)
  fn = lambda x, z, r, c: hyp.fully_connected(BALL, x, z, r, c)
  check_grads(fn, (x, z, r, c), order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


def test_beta_concatenation_factor_and_patch_order():
  assert hyp.beta_concat_scale(8, 9) == pytest.approx(0.324227, abs=5e-7)  # Reference value.
  import torch  # pylint: disable=import-outside-toplevel  # Installed by the test extra.
  x = np.random.default_rng(6).standard_normal((2, 7, 6, 3))
  got = hyp.patches(jnp.asarray(x), (3, 3), 2, 1)
  want = torch.nn.functional.unfold(torch.tensor(x).permute(0, 3, 1, 2), 3, padding=1, stride=2)
  want = want.numpy().reshape(2, 27, 4, 3).transpose(0, 2, 3, 1)  # [B, C*k*k, L] -> NHWC.
  np.testing.assert_allclose(got, want, atol=1e-14)


@pytest.mark.parametrize("strides, padding, kernel", [(1, 1, 3), (2, 1, 3), (2, 0, 1)])
def test_conv_equals_fc_on_unfolded_patches(strides, padding, kernel):
  """The patch-free conv equals exp_0 -> FC -> log_0 on explicitly unfolded patches."""
  c = 0.25  # Exact in float32, the dtype of the layer's curvature.
  conv = hyp.PoincareConv2d(5, kernel_size=(kernel, kernel), strides=strides, padding=padding,
                            identity_init=False, c=c)
  x = jnp.asarray(np.random.default_rng(11).standard_normal((2, 6, 7, 4)))
  params = conv.init(jax.random.PRNGKey(0), x)
  p = params["params"]
  p = {**p, "bias": jnp.asarray(np.random.default_rng(12).standard_normal(5) * 0.1)}
  windows = hyp.patches(x * hyp.beta_concat_scale(4, kernel * kernel), (kernel, kernel),
                        strides, padding)
  want = BALL.logmap0(hyp.fully_connected(BALL, BALL.expmap0(windows, c), p["z"], p["bias"], c), c)
  np.testing.assert_allclose(conv.apply({"params": p}, x), want, rtol=1e-10, atol=1e-12)


def test_conv_with_identity_init_passes_the_centre_channels():
  """A 1x1 Poincaré conv with identity init and no beta change (K = 1) is the identity."""
  conv = hyp.PoincareConv2d(4, kernel_size=(1, 1), padding=0)
  x = jnp.asarray(np.random.default_rng(7).standard_normal((2, 5, 5, 4)) * 0.5)
  params = conv.init(jax.random.PRNGKey(0), x)
  np.testing.assert_allclose(conv.apply(params, x), x, rtol=1e-12, atol=1e-13)
  strided = hyp.PoincareConv2d(4, kernel_size=(1, 1), strides=2, padding=0)
  np.testing.assert_allclose(strided.apply(params, x), x[:, ::2, ::2], rtol=1e-12, atol=1e-13)


def test_batch_norm_running_statistics():
  c = 0.5
  bn = hyp.PoincareBatchNorm(momentum=0.0, c=c)
  x = jnp.asarray(np.random.default_rng(8).standard_normal((4, 3, 3, 5)) * 0.7)
  variables = bn.init(jax.random.PRNGKey(0), x, use_running_average=False)
  np.testing.assert_array_equal(variables["batch_stats"]["mean"], 0)  # Init does not update.
  train_out, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  points = BALL.expmap0(x.reshape(-1, 5), c)
  m = BALL.midpoint(points, c)
  np.testing.assert_allclose(updates["batch_stats"]["mean"], m, rtol=1e-10)
  np.testing.assert_allclose(updates["batch_stats"]["var"], BALL.frechet_variance(points, m, c),
                             rtol=1e-10)
  # Momentum 0: evaluation with the running statistics reproduces the training output.
  eval_out = bn.apply({**variables, **updates}, x, use_running_average=True)
  np.testing.assert_allclose(eval_out, train_out, rtol=1e-9, atol=1e-12)
  # Default init (mean 0, var 1): the output's midpoint is the origin, its variance 1.
  out_points = BALL.expmap0(train_out.reshape(-1, 5), c)
  out_mean = BALL.midpoint(out_points, c)
  assert np.linalg.norm(out_mean) < 0.05
  assert BALL.frechet_variance(out_points, out_mean, c) == pytest.approx(1.0, rel=0.05)


def test_batch_norm_running_mean_moves_along_the_geodesic():
  c = 0.5
  bn = hyp.PoincareBatchNorm(momentum=0.9, c=c)
  x = jnp.asarray(np.random.default_rng(9).standard_normal((16, 3)) * 0.5 + 0.4)
  variables = bn.init(jax.random.PRNGKey(0), x, use_running_average=False)
  _, updates = bn.apply(variables, x, use_running_average=False, mutable=["batch_stats"])
  m = BALL.midpoint(BALL.expmap0(x, c), c)
  np.testing.assert_allclose(updates["batch_stats"]["mean"],
                             BALL.expmap0(0.1 * BALL.logmap0(m, c), c), rtol=1e-10)


def test_residual_and_learnable_curvature():
  f = jnp.asarray(np.random.default_rng(10).standard_normal((3, 4)))
  np.testing.assert_allclose(hyp.poincare_residual(BALL, f, jnp.zeros_like(f), 0.1), f,
                             rtol=1e-12)
  curv = hyp.Curvature(0.1, learnable=True)
  params = curv.init(jax.random.PRNGKey(0))
  assert float(curv.apply(params)) == pytest.approx(0.1, rel=1e-12)
  layer = hyp.PoincareLinear(3, c=0.1, learnable_c=True, identity_init=False)
  v = layer.init(jax.random.PRNGKey(1), f)
  g = jax.grad(lambda p: jnp.sum(layer.apply(p, f) ** 2))(v)
  grad_c = g["params"]["curvature"]["c_raw"]
  assert np.isfinite(grad_c) and grad_c != 0
  # The curvature gradient through the custom VJPs equals plain autodiff's.
  plain = hyp.PoincareLinear(3, c=0.1, learnable_c=True, identity_init=False,
                             custom_grads=False)
  g_plain = jax.grad(lambda p: jnp.sum(plain.apply(p, f) ** 2))(v)
  for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-9)
