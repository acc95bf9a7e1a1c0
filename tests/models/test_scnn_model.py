"""SCNN lane model: exact parameter count (no compile), output shapes, the
align-corners upsampling and the existence branch against NumPy."""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models import scnn


def shapes(model, h, w):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, h, w, 3))))


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_parameter_count_at_800x288_is_the_reference():
  variables = shapes(scnn.SCNN(), 288, 800)
  params = variables["params"]
  assert count(params) == 20_742_217
  assert count(params["backbone"]) == 14_723_136
  assert count(params["message_passing"]) == 589_824
  assert count(params["fc1"]) + count(params["fc2"]) == 576_644
  assert params["fc1"]["kernel"].shape == (4500, 128)  # 5 * (800 / 16) * (288 / 16).
  assert sorted(variables) == ["batch_stats", "params"]


def test_output_shapes_follow_the_input():
  model = scnn.SCNN()
  variables = shapes(model, 288, 800)
  out, aux = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 288, 800, 3))), variables)
  assert out["logits"].shape == (2, 288, 800, 5) and out["logits"].dtype == jnp.float32
  assert out["exist"].shape == (2, 4)
  assert aux["message_passing"].shape == (2, 36, 100, 128)
  assert shapes(model, 64, 96)["params"]["fc1"]["kernel"].shape == (5 * 4 * 6, 128)


def test_align_corners_interpolation_matrix():
  m = scnn.interpolation_matrix(3, 5)  # Sources 0, 0.5, 1, 1.5, 2.
  np.testing.assert_allclose(m, [[1, 0, 0], [.5, .5, 0], [0, 1, 0], [0, .5, .5], [0, 0, 1]])
  m = scnn.interpolation_matrix(4, 32)
  np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(m @ np.arange(4.0), np.arange(32) * 3 / 31, rtol=1e-5)


def test_forward_heads_against_numpy():
  model = scnn.SCNN()
  abstract = shapes(model, 32, 48)
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.05, s.dtype),
                           abstract)
  variables["batch_stats"] = jax.tree.map(jnp.abs, variables["batch_stats"])
  x = jnp.asarray(rng.normal(size=(2, 32, 48, 3)), jnp.float32)
  out, aux = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
  seg = np.asarray(aux["seg_small"], np.float64)  # [2, 4, 6, 5].
  assert seg.shape == (2, 4, 6, 5) and out["logits"].shape == (2, 32, 48, 5)
  logits = np.asarray(out["logits"])
  np.testing.assert_allclose(logits[:, ::31, ::47], seg[:, ::3, ::5], rtol=1e-4, atol=1e-5)
  want = np.einsum("oh,bhwc,pw->bopc", scnn.interpolation_matrix(4, 32), seg,
                   scnn.interpolation_matrix(6, 48))
  np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-5)
  p = np.exp(seg - seg.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  pooled = p.reshape(2, 2, 2, 3, 2, 5).mean(axis=(2, 4))  # [2, 2, 3, 5].
  flat = pooled.transpose(0, 3, 1, 2).reshape(2, -1)  # PyTorch's (C, H, W) order.
  params = jax.tree.map(lambda a: np.asarray(a, np.float64), variables["params"])
  hidden = np.maximum(flat @ params["fc1"]["kernel"] + params["fc1"]["bias"], 0.0)
  exist = hidden @ params["fc2"]["kernel"] + params["fc2"]["bias"]
  np.testing.assert_allclose(out["exist"], exist, rtol=1e-4, atol=1e-5)
