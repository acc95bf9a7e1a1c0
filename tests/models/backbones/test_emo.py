"""EMOv2: exact parameter counts (official code), the hybrid window attention and a
whole i2RMB against direct NumPy evaluations of their formulas, the feature
levels, training through the trainer, and the configs."""
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy.special import erf

from tiny_config import tiny_config
from vision_jax import config as config_lib
from vision_jax import metrics, train
from vision_jax.models.backbones import emo

EPS = 1e-6


def _shapes(model, size=(224, 224), channels=3, **kwargs):
  """The variables' shapes (jax.ShapeDtypeStruct leaves), without running."""
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                           jnp.zeros((1, *size, channels)), **kwargs))


@pytest.mark.parametrize("ctor, expected", [
    (emo.emo2_1m, 1_460_844),    # official EMO2_1M_k5_hybrid
    (emo.emo2_2m, 2_384_312),    # EMO2_2M_k5_hybrid
    (emo.emo2_5m, 5_126_440),    # EMO2_5M_k5_hybrid
    (emo.emo2_20m, 20_195_208),  # EMO2_20M_k5_hybrid
    (emo.emo2_50m, 49_815_560),  # EMO2_50M_k5_hybrid
])
def test_parameter_counts(ctor, expected):
  params = _shapes(ctor(num_classes=1000))["params"]
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)) == expected


# ------------------------------------------------ NumPy evaluations of the formulas


def _np_gelu(x):
  return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _np_silu(x):
  return x / (1 + np.exp(-x))


def _np_softmax(s):
  s = s - s.max(-1, keepdims=True)
  e = np.exp(s)
  return e / e.sum(-1, keepdims=True)


def _np_window_attention(q, k, v, heads, window):
  """[H, W, C] maps (H, W multiples of window) -> remote + close attention, token
  by token: a query sees the keys of its close window (same row // w and column
  // w) and, separately, of its remote window (same row % n1 and column % n2)."""
  h, w, c = q.shape
  n1, n2 = h // window, w // window
  rows, cols = [g.ravel() for g in np.meshgrid(np.arange(h), np.arange(w), indexing="ij")]
  close = ((rows[:, None] // window == rows[None] // window) &
           (cols[:, None] // window == cols[None] // window))
  remote = (rows[:, None] % n1 == rows[None] % n1) & (cols[:, None] % n2 == cols[None] % n2)
  d, dv = c // heads, v.shape[-1] // heads
  q, k, v = q.reshape(h * w, -1), k.reshape(h * w, -1), v.reshape(h * w, -1)
  out = np.zeros((h * w, v.shape[-1]))
  for mask in (close, remote):
    for j in range(heads):
      s = q[:, j * d:(j + 1) * d] @ k[:, j * d:(j + 1) * d].T / np.sqrt(d)
      out[:, j * dv:(j + 1) * dv] += _np_softmax(np.where(mask, s, -np.inf)) @ \
          v[:, j * dv:(j + 1) * dv]
  return out.reshape(h, w, -1)


def _np_attention_module(x, p, heads, window):
  """Zero-pad right/bottom, project (qk; GELU(v)), attend, crop. x [H, W, C]."""
  h, w, c = x.shape
  x = np.pad(x, ((0, -h % window), (0, -w % window), (0, 0)))
  qk = x @ p["qk"]["kernel"] + p["qk"]["bias"]
  v = _np_gelu(x @ p["v"]["kernel"] + p["v"]["bias"])
  return _np_window_attention(qk[..., :c], qk[..., c:], v, heads, window)[:h, :w]


def _np_depthwise(x, kernel, stride):
  """k x k depthwise conv, zero padding k // 2; x [H, W, C], kernel [k, k, 1, C]."""
  k = kernel.shape[0]
  h, w = (x.shape[0] - 1) // stride + 1, (x.shape[1] - 1) // stride + 1
  x = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
  out = np.zeros((h, w, x.shape[-1]))
  for a in range(k):
    for b in range(k):
      out += x[a:a + stride * h:stride, b:b + stride * w:stride] * kernel[a, b, 0]
  return out


def _np_batch_norm(x, p, s):
  return (x - s["mean"]) / np.sqrt(s["var"] + EPS) * p["scale"] + p["bias"]


def _np_layer_norm(x, p):
  mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + EPS) * p["scale"] + p["bias"]


def _np_irmb(x, p, s, *, attention, stride, heads, window):
  """The i2RMB formula (module docstring of emo.py) on one [H, W, C] map."""
  skip = stride == 1 and x.shape[-1] == p["proj"]["kernel"].shape[-1]
  if attention:
    xn = _np_layer_norm(x, p["norm"])
    xe = _np_attention_module(xn, p["attn"], heads, window)
  else:
    xn = _np_batch_norm(x, p["norm"], s["norm"])
    xe = _np_silu(xn @ p["expand"]["kernel"] + p["expand"]["bias"])
  xl = _np_silu(_np_batch_norm(_np_depthwise(xe, p["dw"]["kernel"], stride), p["dw_norm"],
                               s["dw_norm"]))
  y = ((xe + xl) if skip else xl) @ p["proj"]["kernel"] * p["gamma"]
  return x + y if skip else y


def _randomised(variables, seed):
  """Every variable redrawn (positive variances, gammas around 0.5) so no term hides."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "var" in name:
      return rng.uniform(0.5, 2.0, leaf.shape)
    if "gamma" in name or "scale" in name:
      return rng.uniform(0.3, 1.2, leaf.shape)
    return rng.normal(0.0, 0.5, leaf.shape)
  return jax.tree_util.tree_map_with_path(draw, variables)


def _to_jax(tree):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def test_window_partitions_are_the_close_and_remote_grids():
  x = jnp.arange(8 * 12, dtype=jnp.float32).reshape(1, 8, 12, 1)  # token id = 12 row + col
  close, remote = emo.partition(x, 4, "close"), emo.partition(x, 4, "remote")
  assert close.shape == remote.shape == (1, 6, 16, 1)  # n1 n2 = 2 x 3 windows of 4 x 4
  rows, cols = np.divmod(np.asarray(close[0, :, :, 0]), 12)
  assert np.all(rows // 4 == rows[:, :1] // 4) and np.all(cols // 4 == cols[:, :1] // 4)
  rows, cols = np.divmod(np.asarray(remote[0, :, :, 0]), 12)
  assert np.all(rows % 2 == rows[:, :1] % 2) and np.all(cols % 3 == cols[:, :1] % 3)
  assert sorted(np.unique(np.diff(np.sort(np.unique(rows[0]))))) == [2]  # rows 2 apart
  for kind, parts in (("close", close), ("remote", remote)):
    np.testing.assert_array_equal(emo.merge(parts, 4, kind, (8, 12)), x)


def test_hybrid_window_attention_is_the_sum_of_close_and_remote_softmax_attention():
  rng = np.random.default_rng(0)
  q, k = rng.normal(size=(2, 8, 12, 6)), rng.normal(size=(2, 8, 12, 6))
  v = rng.normal(size=(2, 8, 12, 9))
  got = emo.hybrid_window_attention(*_to_jax((q, k, v)), num_heads=3, window=4)
  for i in range(2):
    np.testing.assert_allclose(got[i], _np_window_attention(q[i], k[i], v[i], 3, 4),
                               rtol=1e-5, atol=1e-5)
  close = emo.hybrid_window_attention(*_to_jax((q, k, v)), num_heads=3, window=4,
                                      partitions=("close",))
  assert np.max(np.abs(got - 2 * close)) > 0.1  # The two partitions differ here.
  with pytest.raises(ValueError, match="pad it first"):
    emo.hybrid_window_attention(*_to_jax((q[:, :7], k[:, :7], v[:, :7])), num_heads=3,
                                window=4)


def test_attention_module_pads_projects_and_crops():
  x = np.random.default_rng(1).normal(size=(2, 10, 13, 8))  # Padded to 12 x 16, 3 x 4 windows.
  module = emo.HybridWindowAttention(features=12, dim_head=4, window=4)
  variables = _randomised(_shapes(module, (10, 13), channels=8), 2)
  got = jax.jit(module.apply)(_to_jax(variables), jnp.asarray(x, jnp.float32))
  assert got.shape == (2, 10, 13, 12)
  for i in range(2):
    np.testing.assert_allclose(got[i], _np_attention_module(x[i], variables["params"], 2, 4),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("attention, stride, norm, act, shape", [
    (True, 1, "layer", "gelu", (10, 13, 8)),   # Attention block, padded windows, shortcut.
    (False, 2, "batch", "silu", (9, 12, 6)),   # Downsampling block: conv expansion, stride 2.
])
def test_irmb_is_the_block_formula(attention, stride, norm, act, shape):
  block = emo.IRMB(8, 2.0 if attention else 3.0, stride=stride, norm=norm, act=act,
                   attention=attention, dim_head=4, window=4)
  x = np.random.default_rng(3).normal(size=(2, *shape))
  variables = _randomised(_shapes(block, shape[:2], channels=shape[2], train=False), 4)
  got = jax.jit(functools.partial(block.apply, train=False))(_to_jax(variables),
                                                             jnp.asarray(x, jnp.float32))
  for i in range(2):
    want = _np_irmb(x[i], variables["params"], variables.get("batch_stats", {}),
                    attention=attention, stride=stride, heads=2, window=4)
    assert got[i].shape == want.shape
    np.testing.assert_allclose(got[i], want, rtol=1e-4, atol=1e-4)


# ------------------------------------------------ model contract


def test_feature_levels_declared_are_the_outputs():
  backbone = emo.emo2_1m(features_only=True)
  variables = _shapes(backbone, (160, 192))
  assert "norm" not in variables["params"] and "head" not in variables["params"]
  levels, _ = jax.eval_shape(lambda v: backbone.apply(v, jnp.zeros((2, 160, 192, 3))), variables)
  declared = backbone.feature_levels()
  assert list(levels) == list(declared) == ["C2", "C3", "C4", "C5"]
  assert [l.channels for l in declared.values()] == [32, 48, 80, 180]
  for name, level in declared.items():
    assert levels[name].shape == (2, 160 // level.stride, 192 // level.stride, level.channels)


def test_pooled_features_and_bfloat16_compute_with_float32_params():
  model = emo.emo2_1m(num_classes=0, dtype=jnp.bfloat16)
  variables = _shapes(model, (64, 64))
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  pooled, aux = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 64, 64, 3))), variables)
  assert pooled.shape == (2, 180) and aux["stage4"].dtype == jnp.bfloat16
  logits, _ = jax.eval_shape(lambda v: emo.emo2_1m(num_classes=7).apply(
      v, jnp.zeros((2, 64, 64, 3))), _shapes(emo.emo2_1m(num_classes=7), (64, 64)))
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32


TINY_MODEL = {"name": "emo2_1m", "depths": (1, 1, 1, 2), "embed_dims": (8, 16, 24, 32),
              "exp_ratios": (2., 2., 2., 2.), "dim_heads": (4, 4, 8, 8), "window_size": 2,
              "drop_path_rate": 0.1, "num_classes": 10}


def test_training_on_digits_lowers_the_loss(tmp_path):
  pp = "decode|resize(16)|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"
  config = tiny_config(**{"data.pp_train": pp, "data.pp_eval": pp, "optimizer.name": "adamw",
                          "optimizer.learning_rate": 1e-2, "mesh.data": 1})
  config.model = ml_collections.ConfigDict(TINY_MODEL)
  train.run(config, str(tmp_path))
  rows = [r for r in metrics.read_metrics(tmp_path) if "train/loss" in r]
  assert [r["step"] for r in rows] == [5, 10, 15, 20]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 0.05, rows


def test_configs_validate_and_a_bad_variant_is_named():
  for arg in ("", "variant=1m", "variant=2m", "variant=20m,batch=256", "variant=50m", "demo"):
    config = config_lib.load(f"configs/emo/imagenet.py:{arg}")
    config_lib.validate(config)
  config = config_lib.load("configs/emo/imagenet.py:variant=2m,batch=2048")
  assert config.model.name == "emo2_2m" and config.optimizer.learning_rate == pytest.approx(6e-3)
  assert config.schedule.end_factor * 1.5e-3 == pytest.approx(2.5e-7)
  with pytest.raises(config_lib.ConfigError, match="variant='3m'"):
    config_lib.load("configs/emo/imagenet.py:variant=3m")
