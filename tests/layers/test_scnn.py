"""SCNN message passing (Eq. 1): the scanned passes against an explicit loop
over slices, and gradients through the four passes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.layers import scnn


def conv_same_np(s, kernel):
  """'Same' 1-D cross-correlation of s [B, N, C] with kernel [w, C, C'] in NumPy."""
  w = kernel.shape[0]
  pad = np.pad(s, ((0, 0), ((w - 1) // 2, w // 2), (0, 0)))
  return sum(np.einsum("bnc,cd->bnd", pad[:, k:k + s.shape[1]], kernel[k]) for k in range(w))


def pass_loop(x, kernel, vertical, reverse):
  """Eq. 1 slice by slice, as the PyTorch port writes it."""
  n = x.shape[1] if vertical else x.shape[2]
  slices = [x[:, i] if vertical else x[:, :, i] for i in range(n)]
  if reverse:
    slices = slices[::-1]
  out = [slices[0]]
  for i in range(1, n):
    out.append(slices[i] + np.maximum(conv_same_np(out[-1], kernel), 0.0))
  if reverse:
    out = out[::-1]
  return np.stack(out, axis=1 if vertical else 2)


@pytest.mark.parametrize("vertical,reverse", [(True, False), (True, True), (False, False),
                                              (False, True)])
def test_each_direction_matches_the_slice_loop(vertical, reverse):
  x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 3)), np.float64)
  kernel = np.asarray(jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3)), np.float64) * 0.5
  got = scnn.directional_pass(jnp.asarray(x, jnp.float32), jnp.asarray(kernel, jnp.float32),
                              vertical, reverse)
  want = pass_loop(x, kernel, vertical, reverse)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  first = 0 if not reverse else -1  # The first slice of the pass is unchanged.
  np.testing.assert_array_equal(np.take(np.asarray(got), first, axis=1 if vertical else 2),
                                np.take(x.astype(np.float32), first, axis=1 if vertical else 2))
  assert not np.allclose(got, x, atol=1e-3)  # The other slices did receive messages.


def test_module_applies_d_u_r_l_in_order_with_distinct_weights():
  layer = scnn.MessagePassing(kernel_size=5)
  x = jax.random.normal(jax.random.PRNGKey(2), (1, 6, 8, 4))
  params = layer.init(jax.random.PRNGKey(3), x)["params"]
  assert {k: v.shape for k, v in params.items()} == {
      "up_down": (1, 5, 4, 4), "down_up": (1, 5, 4, 4),
      "left_right": (5, 1, 4, 4), "right_left": (5, 1, 4, 4)}
  assert not np.allclose(params["up_down"], params["down_up"])
  want = np.asarray(x, np.float64)
  for name, vertical, reverse in (("up_down", True, False), ("down_up", True, True),
                                  ("left_right", False, False), ("right_left", False, True)):
    want = pass_loop(want, np.asarray(params[name], np.float64).reshape(5, 4, 4), vertical,
                     reverse)
  np.testing.assert_allclose(layer.apply({"params": params}, x), want, rtol=1e-4, atol=1e-5)


def test_init_std_is_the_lua_one():
  layer = scnn.MessagePassing(kernel_size=9)
  params = layer.init(jax.random.PRNGKey(0), jnp.zeros((1, 4, 4, 32)))["params"]
  std = float(np.std(np.concatenate([np.ravel(v) for v in params.values()])))
  np.testing.assert_allclose(std, np.sqrt(2.0 / (9 * 32 * 32 * 5)), rtol=0.03)


def test_gradient_is_finite_and_reaches_every_kernel():
  layer = scnn.MessagePassing(kernel_size=3)
  x = jax.random.normal(jax.random.PRNGKey(4), (2, 6, 5, 4))
  params = layer.init(jax.random.PRNGKey(5), x)["params"]
  params = jax.tree.map(lambda p: p * 50.0, params)  # Messages large enough to matter.
  loss = lambda p, x: jnp.sum(layer.apply({"params": p}, x) ** 2)
  grads, grad_x = jax.grad(loss, argnums=(0, 1))(params, x)
  for name, g in grads.items():
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0, name
  assert np.all(np.isfinite(grad_x))
