"""PVT v1: exact parameter counts (official code), shapes at any input size,
PyTorch-equal position-embedding resizing, and train-only stochastic depth."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.layers.drop_path import DropPath
from vision_jax.layers.mlp import Mlp
from vision_jax.models.backbones import pvt

SIZES = ("pvt_tiny", "pvt_small", "pvt_medium", "pvt_large")


def _shapes(model, h=224, w=224):
  x = jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), x)
  return variables, jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)


def _count(params):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


@pytest.mark.parametrize("name, classifier, backbone", [
    ("pvt_tiny", 13_229_288, 12_714_752),
    ("pvt_small", 24_485_864, 23_971_328),
    ("pvt_medium", 44_208_104, 43_693_568),
    ("pvt_large", 61_369_320, 60_854_784),
])
def test_parameter_counts(name, classifier, backbone):
  ctor = getattr(pvt, name)
  variables, _ = _shapes(ctor())
  assert _count(variables["params"]) == classifier
  variables, _ = _shapes(ctor(features_only=True))
  assert _count(variables["params"]) == backbone
  # The backbone still stores the 1 + 7 * 7 stage-4 position slots.
  assert variables["params"]["pos_embed4"].shape == (1, 50, 512)


def test_per_block_counts_and_names():
  variables, _ = _shapes(pvt.pvt_tiny())
  params = variables["params"]
  expected = {1: 345_344, 2: 592_384, 3: 1_643_520, 4: 3_152_384}
  assert {i: _count(params[f"block{i}_0"]) for i in expected} == expected
  assert set(params["block1_0"]["attn"]) == {"q", "kv", "proj", "sr", "norm"}
  assert set(params["block4_0"]["attn"]) == {"q", "kv", "proj"}  # sr_ratio 1.
  assert params["block1_0"]["attn"]["sr"]["kernel"].shape == (8, 8, 64, 64)
  assert params["patch_embed1"]["proj"]["kernel"].shape == (4, 4, 3, 64)


def test_drop_path_defaults():
  assert [getattr(pvt, n)().drop_path_rate for n in SIZES] == [0.1, 0.1, 0.3, 0.3]


@pytest.mark.parametrize("h, w", [(224, 224), (448, 448), (320, 480)])
def test_shapes_at_any_size(h, w):
  _, (logits, aux) = _shapes(pvt.pvt_tiny(num_classes=7), h, w)
  assert logits.shape == (1, 7) and logits.dtype == jnp.float32
  assert aux["pre_logits"].shape == (1, 512)
  grids = [(h // s, w // s) for s in (4, 8, 16, 32)]
  assert [aux[f"stage{i}"].shape[1:3] for i in range(1, 5)] == grids
  _, (maps, aux) = _shapes(pvt.pvt_tiny(features_only=True), h, w)
  assert list(maps) == ['C2', 'C3', 'C4', 'C5']
  assert [m.shape for m in maps.values()] == [(1, *g, c) for g, c in zip(grids, (64, 128, 320, 512))]
  assert "pre_logits" not in aux


@pytest.mark.parametrize("src, dst", [
    ((56, 56), (112, 112)), ((28, 28), (56, 56)), ((14, 14), (28, 28)), ((7, 7), (14, 14)),  # 448.
    ((56, 56), (80, 120)), ((28, 28), (40, 60)), ((14, 14), (20, 30)), ((7, 7), (10, 15)),  # 320x480.
    ((56, 56), (40, 24)), ((7, 7), (3, 5)),  # Shrinking: no antialiasing.
])
def test_resize_matches_torch_interpolate(src, dst):
  import torch  # pylint: disable=import-outside-toplevel
  pos = np.random.RandomState(0).normal(size=(1, src[0] * src[1], 16)).astype(np.float32)
  ours = np.asarray(pvt.resize_pos_embed(jnp.asarray(pos), src, dst))
  grid = torch.from_numpy(pos).reshape(1, *src, 16).permute(0, 3, 1, 2)
  ref = torch.nn.functional.interpolate(grid, size=dst, mode="bilinear", align_corners=False)
  ref = ref.reshape(1, 16, -1).permute(0, 2, 1).numpy()
  np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_resize_is_identity_at_pretrain_grid():
  pos = jnp.arange(2 * 9 * 3, dtype=jnp.float32).reshape(2, 9, 3)
  assert pvt.resize_pos_embed(pos, (3, 3), (3, 3)) is pos


def _micro(**kwargs):
  return pvt.PVT(embed_dims=(8, 16, 16, 16), num_heads=(1, 2, 2, 2), mlp_ratios=(2, 2, 2, 2),
                 depths=(1, 1, 1, 1), sr_ratios=(4, 2, 1, 1), num_classes=5, pretrain_size=64,
                 **kwargs)


def test_drop_path_only_in_train_mode():
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 64, 64, 3))
  variables = jax.jit(_micro(features_only=True).init)(jax.random.PRNGKey(0), x)

  @functools.partial(jax.jit, static_argnums=(0, 1))
  def apply(rate, train, seed):
    maps, _ = _micro(drop_path_rate=rate, features_only=True).apply(
        variables, x, train=train, rngs={"dropout": jax.random.PRNGKey(seed)})
    return jnp.concatenate([m.reshape(4, -1) for m in maps.values()], 1)

  evaluated = apply(0.5, False, 0)
  np.testing.assert_array_equal(evaluated, apply(0.5, False, 1))
  # Without stochastic depth (and no dropout) train mode is deterministic and equal.
  np.testing.assert_allclose(apply(0., True, 0), evaluated, atol=1e-6)
  trained = apply(0.5, True, 0)
  assert not np.allclose(trained, evaluated, atol=1e-3)
  assert not np.allclose(trained, apply(0.5, True, 1), atol=1e-3)


def test_drop_path_layer():
  x = jnp.ones((2000, 3))
  layer = DropPath(0.25)
  assert layer.apply({}, x, train=False) is x
  y = np.asarray(layer.apply({}, x, train=True, rngs={"dropout": jax.random.PRNGKey(0)}))
  assert set(np.unique(y)) <= {0., np.float32(1 / 0.75)}
  assert np.all(y == y[:, :1])  # Whole examples are dropped.
  assert abs((y[:, 0] == 0).mean() - 0.25) < 0.04


def test_mlp_shapes_and_names():
  variables = Mlp(12, out_features=5).init(jax.random.PRNGKey(0), jnp.ones((2, 3, 4)), train=False)
  assert jax.tree.map(jnp.shape, variables["params"]) == {
      "fc1": {"kernel": (4, 12), "bias": (12,)}, "fc2": {"kernel": (12, 5), "bias": (5,)}}


def test_bfloat16_compute_keeps_float32_params():
  model = _micro(dtype=jnp.bfloat16, features_only=True)
  x = jnp.ones((1, 64, 96, 3))
  variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  maps, _ = jax.jit(model.apply)(variables, x)
  assert [m.dtype for m in maps.values()] == [jnp.bfloat16] * 4
  assert [m.shape[1:3] for m in maps.values()] == [(16, 24), (8, 12), (4, 6), (2, 3)]


def test_fused_attention_equals_the_batched_matmul_form():
  keys = jax.random.split(jax.random.PRNGKey(4), 3)
  q = jax.random.normal(keys[0], (2, 24, 3, 8))
  k, v = (jax.random.normal(key, (2, 6, 3, 8)) for key in keys[1:])
  np.testing.assert_allclose(pvt.attention(q, k, v, "fused"), pvt.attention(q, k, v, "einsum"),
                             atol=1e-5, rtol=1e-5)
  # NumPy: softmax(q k^T / sqrt(d)) v per head.
  logits = np.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(8)
  weights = np.exp(logits - logits.max(-1, keepdims=True))
  weights /= weights.sum(-1, keepdims=True)
  np.testing.assert_allclose(pvt.attention(q, k, v, "einsum"),
                             np.einsum("bhnm,bmhd->bnhd", weights, v), atol=1e-5, rtol=1e-5)
  with pytest.raises(ValueError, match="attention='flash': choose one of"):
    pvt.attention(q, k, v, "flash")


def _loss_and_grads(model, variables, x):
  def loss(params):
    maps, _ = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)})
    return sum(jnp.sum(jnp.sin(m)) for m in maps.values())
  return jax.jit(jax.value_and_grad(loss))(variables["params"])


def test_fused_attention_and_per_stage_remat_keep_parameters_outputs_and_gradients():
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 96, 3))
  base = _micro(features_only=True, drop_path_rate=0.2)
  variables = jax.jit(base.init)(jax.random.PRNGKey(0), x)
  loss, grads = _loss_and_grads(base, variables, x)
  for kwargs in ({"attention": "fused"}, {"remat_stages": (1, 3)}):
    model = _micro(features_only=True, drop_path_rate=0.2, **kwargs)
    again = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    assert jax.tree.structure(again) == jax.tree.structure(variables)
    other_loss, other_grads = _loss_and_grads(model, variables, x)
    np.testing.assert_allclose(other_loss, loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
                 other_grads, grads)
  def checkpoints(model):  # jax.checkpoint regions in the forward program.
    apply = lambda p: model.apply({"params": p}, x, train=False)  # noqa: E731
    return str(jax.make_jaxpr(apply)(variables["params"])).count("remat2[")
  assert checkpoints(base) == 0
  assert checkpoints(_micro(features_only=True, remat_stages=(1, 3))) == 2  # One block each.
  with pytest.raises(ValueError, match=r"remat_stages=\(5,\): stages are 1..4"):
    _micro(remat_stages=(5,)).init(jax.random.PRNGKey(0), x)
