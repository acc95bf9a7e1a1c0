"""HyperZ·Z·W operators and slow nets against direct NumPy evaluations of their
formulas (and torch's adaptive pooling / grouped conv where torch has them)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from vision_jax.layers import hyperzzw as hz

_erf = np.vectorize(math.erf)


def _gelu(x):
  return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _np_params(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _np_magnet(p, grid, num_layers, renorm=None, modulations=None):
  """h0 = sin(W0 c + b0); h_l = sin(W_l^f c + b_l^f) (W_l h + b_l) + β; out = W h + b."""
  axes = [np.linspace(-1, 1, s) for s in grid]
  coords = np.stack(np.meshgrid(*axes, indexing="ij"), -1)
  gabor = lambda l: np.sin(coords @ p[f"filter{l}"]["kernel"] + p[f"filter{l}"]["bias"])
  h = gabor(0)
  for l in range(1, num_layers + 1):
    lin = p[f"linear{l - 1}"]
    h = gabor(l) * (h @ lin["kernel"] + lin["bias"]) + p["grid_bias"][..., None]
    if renorm is not None:
      h = h + renorm * h / np.linalg.norm(h.reshape(-1, h.shape[-1]), axis=0)
    if modulations is not None:
      h = h * modulations[l - 1]
  return h @ p["out"]["kernel"] + p["out"]["bias"]


def _perturbed(params, seed=0):
  """Every zero/one init made random, so no term can hide."""
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(tree, [l + 0.3 * jax.random.normal(k, l.shape) for l, k in zip(leaves, keys)])


def test_magnet_matches_numpy_and_init():
  net = hz.MAGNet((5, 4), features=3, hidden=6, num_layers=2, omega_0=1.0)
  params = net.init(jax.random.PRNGKey(0))["params"]
  # Init: output weights He-uniform (bound √(3/hidden)) x √(1/#coords); linear biases 1.
  assert np.abs(params["out"]["kernel"]).max() <= math.sqrt(3 / 6) * math.sqrt(1 / 20)
  np.testing.assert_array_equal(params["linear1"]["bias"], 1.0)
  np.testing.assert_array_equal(params["grid_bias"], 0.0)
  params = _perturbed(params)
  out = net.apply({"params": params})
  assert out.shape == (5, 4, 3)
  np.testing.assert_allclose(out, _np_magnet(_np_params(params), (5, 4), 2), rtol=1e-4, atol=1e-5)


def test_gabor_frequencies_follow_the_gamma_init():
  """W^f = U(-1/√d, 1/√d) 2π ω0 γ, γ ~ Gamma(6 / (l + 1)): E|W| = π ω0 E[γ] / √d."""
  net = hz.MAGNet((4, 4), features=1, hidden=4096, num_layers=2, omega_0=2000.0)
  params = net.init(jax.random.PRNGKey(1))["params"]
  for layer, alpha in ((0, 6.0), (2, 2.0)):
    w = np.asarray(params[f"filter{layer}"]["kernel"])
    expected = math.pi * 2000.0 * alpha / math.sqrt(2)
    assert abs(np.abs(w).mean() / expected - 1) < 0.05


@pytest.mark.parametrize("a", [6.0, 1.5, 0.5])
def test_gamma_sampler_moments(a):
  x = np.asarray(hz.gamma_sample(jax.random.PRNGKey(0), a, (100_000,)))
  assert (x > 0).all()
  assert abs(x.mean() - a) < 0.02 * a and abs(x.var() - a) < 0.05 * a


@pytest.mark.parametrize("size_in, size_out", [(8, 3), (8, 9), (32, 5), (7, 7)])
def test_adaptive_pool_matches_torch(size_in, size_out):
  x = np.random.default_rng(0).normal(size=(2, size_in, size_in, 3)).astype(np.float32)
  ref = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), size_out)
  np.testing.assert_allclose(hz.adaptive_avg_pool(jnp.asarray(x), size_out),
                             ref.permute(0, 2, 3, 1).numpy(), rtol=1e-5, atol=1e-6)


def _np_adaptive_pool(x, k):
  n, out = x.shape[1], np.zeros((x.shape[0], k, k, x.shape[3]))
  bins = [(math.floor(i * n / k), math.ceil((i + 1) * n / k)) for i in range(k)]
  for i, (a, b) in enumerate(bins):
    for j, (c, d) in enumerate(bins):
      out[:, i, j] = x[:, a:b, c:d].mean(axis=(1, 2))
  return out


def test_local_slow_net_matches_numpy():
  """Context g = GELU(W_1 mean_B(W_r pool_k(x) + b_r) + b_1); per layer
  h <- (h + 0.1 h / ‖h‖) ⊙ (W_l^x g + b_l^x)."""
  net = hz.LocalSlowNet(kernel_size=3, hidden=5, num_layers=2, omega_0=1.0)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, 7, 7, 4))
  params = _perturbed(net.init(jax.random.PRNGKey(0), x)["params"])
  hk = net.apply({"params": params}, x)
  assert hk.shape == (3, 3, 4)
  p = _np_params(params)
  dense = lambda v, name: v @ p[name]["kernel"] + p[name]["bias"]
  g = dense(_np_adaptive_pool(np.asarray(x, np.float64), 3), "context_reduce").mean(0)
  g = _gelu(dense(g, "context_fc"))
  mods = [dense(g, f"context_linear{i}") for i in range(2)]
  ref = _np_magnet(p["magnet"], (3, 3), 2, renorm=0.1, modulations=mods)
  np.testing.assert_allclose(hk, ref, rtol=1e-4, atol=1e-5)


def test_renormalisation_passes_gradient_only_through_the_normalised_term():
  """Official `.data.clone()`: d/dβ-path only; the value is h + 0.1 h/‖h‖."""
  net = hz.MAGNet((3,), features=1, hidden=2, num_layers=1, omega_0=1.0, renorm=0.1)
  params = _perturbed(net.init(jax.random.PRNGKey(0))["params"])
  plain = hz.MAGNet((3,), features=1, hidden=2, num_layers=1, omega_0=1.0)
  # d out / d out-bias is 1 either way; d out / d grid_bias differs from the
  # un-renormalised net's, whose gradient is the full W_out sum.
  g = jax.grad(lambda p: net.apply({"params": p}).sum())(params)["grid_bias"]
  g_plain = jax.grad(lambda p: plain.apply({"params": p}).sum())(params)["grid_bias"]
  assert np.all(np.isfinite(g)) and not np.allclose(g, g_plain)
  assert np.abs(g).max() < 0.5 * np.abs(g_plain).max()


def test_global_product_matches_numpy():
  """(Z ⊙ W) @ Z' over the spatial dims, per example and channel (NCHW matmul)."""
  rng = np.random.default_rng(0)
  hk, z, z2 = rng.normal(size=(5, 5, 3)), rng.normal(size=(2, 5, 5, 3)), rng.normal(size=(2, 5, 5, 3))
  out = hz.hyperzzw_global(jnp.asarray(hk, jnp.float32), jnp.asarray(z, jnp.float32),
                           jnp.asarray(z2, jnp.float32))
  ctx, zt = (z * hk).transpose(0, 3, 1, 2), z2.transpose(0, 3, 1, 2)
  ref = np.stack([[ctx[b, c] @ zt[b, c] for c in range(3)] for b in range(2)]).transpose(0, 2, 3, 1)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="square"):
    hz.hyperzzw_global(jnp.ones((4, 5, 1)), jnp.ones((1, 4, 5, 1)), jnp.ones((1, 4, 5, 1)))


@pytest.mark.parametrize("k", [3, 5])
def test_local_product_matches_numpy(k):
  """Depthwise cross-correlation, zero padding (k - 1) / 2, groups = C."""
  rng = np.random.default_rng(k)
  hk, z = rng.normal(size=(k, k, 3)), rng.normal(size=(2, 6, 7, 3))
  out = hz.hyperzzw_local(jnp.asarray(hk, jnp.float32), jnp.asarray(z, jnp.float32))
  p = (k - 1) // 2
  zp = np.pad(z, ((0, 0), (p, p), (p, p), (0, 0)))
  ref = np.zeros_like(z)
  for i in range(6):
    for j in range(7):
      ref[:, i, j] = np.einsum("bijc,ijc->bc", zp[:, i:i + k, j:j + k], hk)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="odd"):
    hz.hyperzzw_local(jnp.ones((2, 2, 3)), jnp.ones((1, 4, 4, 3)))


def test_2e_and_gradients_finite():
  rng = np.random.default_rng(1)
  hk, z = jnp.asarray(rng.normal(size=(4, 4, 2)), jnp.float32), jnp.asarray(rng.normal(size=(3, 4, 4, 2)), jnp.float32)
  np.testing.assert_allclose(hz.hyperzzw_2e(hk, z), np.asarray(z) ** 2 * np.asarray(hk), rtol=1e-6)

  def loss(hk, z):
    y = hz.hyperzzw_global(hk, z, z) + hz.hyperzzw_local(hk[:3, :3], z) + hz.hyperzzw_2e(hk, z)
    return jnp.sum(jnp.tanh(y))
  grads = jax.grad(loss, argnums=(0, 1))(hk, z)
  assert all(np.isfinite(g).all() and np.abs(g).sum() > 0 for g in grads)
