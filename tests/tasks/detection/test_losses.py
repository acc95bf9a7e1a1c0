"""Sigmoid focal loss (mmcv semantics) and L1 vs float64 formulas."""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.tasks.detection import losses


def _focal_ref(x, t, gamma=2., alpha=0.25):
  x = x.astype(np.float64)
  p = 1. / (1. + np.exp(-x))
  p_t = np.where(t == 1, p, 1. - p)
  alpha_t = np.where(t == 1, alpha, 1. - alpha)
  return -alpha_t * (1. - p_t) ** gamma * np.log(p_t)


def test_focal_loss_matches_formula():
  rng = np.random.default_rng(0)
  x = rng.normal(0., 4., (64, 10)).astype(np.float32)
  t = np.eye(10, dtype=np.float32)[rng.integers(0, 11, 64) % 10]
  t[:5] = 0.  # background rows: all-zero targets.
  got = jax.jit(losses.sigmoid_focal_loss)(x, t)
  np.testing.assert_allclose(got, _focal_ref(x, t), rtol=2e-5, atol=1e-7)
  # alpha_t: a confident miss costs (1 - alpha) on negatives, alpha on positives.
  pos = losses.sigmoid_focal_loss(jnp.array(-3.), jnp.array(1.))
  neg = losses.sigmoid_focal_loss(jnp.array(3.), jnp.array(0.))
  np.testing.assert_allclose(neg / pos, 3., rtol=1e-5)
  np.testing.assert_allclose(losses.sigmoid_focal_loss(x, t, gamma=0., alpha=0.5),
                             _focal_ref(x, t, 0., 0.5), rtol=2e-5, atol=1e-7)


def test_focal_loss_extreme_logits_finite_with_finite_grad():
  x = jnp.array([-100., 100., -100., 100., 0.])
  t = jnp.array([1., 0., 0., 1., 1.])
  loss = losses.sigmoid_focal_loss(x, t)
  assert np.all(np.isfinite(loss))
  np.testing.assert_allclose(loss[:2], [25., 75.], rtol=1e-5)  # alpha_t * 1 * 100.
  np.testing.assert_allclose(loss[2:4], [0., 0.], atol=1e-30)
  grad = jax.grad(lambda z: losses.sigmoid_focal_loss(z, t).sum())(x)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(grad[0], -0.25, rtol=1e-5)  # d/dx of -alpha * x at x -> -inf.


def test_l1():
  np.testing.assert_allclose(losses.l1_loss(jnp.array([1., -2., 0.5]), jnp.array([0., 1., 0.5])),
                             [1., 3., 0.])
