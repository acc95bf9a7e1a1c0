"""EMOv2 (Jiangning Zhang et al., "EMOv2: Pushing 5M Vision Model Frontier", 2024,
arXiv:2412.06674; the extension of EMO, ICCV 2023): an efficient hierarchical
backbone built from one block, the improved inverted residual mobile block (i2RMB).

A stem (3x3 s2 conv + BN + SiLU, depthwise 3x3 + BN + SiLU, 1x1 conv) halves
the image to C0/2 channels; four stages of `depths[i]` i2RMBs follow. Block 0
of each stage downsamples (stride 2, expansion 2 r_i, no shortcut); the others
keep the size and add their input back. One i2RMB of width C and expansion r:

  x_n = Norm(x)                           BatchNorm (stages 1-2) / LayerNorm (3-4)
  x_e = EOP(x_n)    C -> rC channels:     stages 1-2 and every block 0:
                                            Act(W_1 x_n + b)           (1x1 conv)
                                          other blocks of stages 3-4: the hybrid
                                            window attention below
  x_l = SiLU(BN(DW_kxk(x_e)))             depthwise k x k (k = 5), stride s
  y   = gamma * W_2 (x_e + x_l)           (x_l alone without a shortcut); 1x1, LayerScale
  out = x + DropPath(y)                   (y alone without a shortcut)

Act is SiLU in stages 1-2 and GELU (exact, erf) in 3-4. The hybrid window
attention (`hybrid_window_attention`): Q, K = split(W_qk x_n + b_qk) (C each,
`C // dim_head` heads of dim_head), V = Act(W_v x_n + b_v) (rC channels, rC /
heads per head); the zero-padded (right/bottom) map of n1 w x n2 w tokens is
split two ways into n1 n2 windows of w x w tokens,

  close:  rows a w .. a w + w - 1,            columns b w .. b w + w - 1
  remote: rows a, a + n1, ..., a + (w-1) n1,  columns b, b + n2, ..., b + (w-1) n2

and in each window, head by head, Attn = softmax(Q K^T / sqrt(dim_head)) V; the
output is Attn_remote + Attn_close (the same Q, K, V), cropped to the input's
size. Padded tokens take part (their keys and values are the projections of
zeros), as in the official code. At a 7 x 7 map with w = 7 both partitions are
the whole map, so the output is twice global attention. The classifier ends
with LayerNorm, a global mean and a linear head; all norms have eps 1e-6.

Layout, hyper-parameters and initialisation follow the official code
(zhangzjn/EMOv2 model/lib_emo/emo2.py, `EMO2_*_k5_hybrid`), so its checkpoints
map one to one (`emo_weights.py`): convs keep PyTorch's default init, the head
is N(0, 0.02) with zero bias (timm's trunc_normal_(std=.02) truncates at +-2
absolute, i.e. never), LayerScale starts at 1e-6. Exact parameter counts
(1000 classes): emo2_1m 1,460,844; emo2_2m 2,384,312; emo2_5m 5,126,440;
emo2_20m 20,195,208; emo2_50m 49,815,560.

With `features_only` the four stage outputs are the levels C2-C5 (strides 4,
8, 16, 32; e.g. 32, 48, 80, 180 channels for emo2_1m), without the final norm
or head, as the official detection backbone (out_indices 1-4); `norm_eval`
keeps BatchNorm on its running statistics in training too. Deliberate
differences: 1x1 convs are stored as Dense kernels [in, out] (the same
parameters); the official `window_sizes <= 0` (one window per map), `v_group`,
`attn_pre` and the remote-only / close-only EMOv1 operators are not offered,
as no EMOv2 variant uses them.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers.activations import gelu
from vision_jax.layers.drop_path import DropPath
from vision_jax.models import features as features_lib

Dtype = Any
EPS = 1e-6  # Every norm of the official code (`get_norm`).
conv_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")  # PyTorch's default.
dense_init = nn.initializers.normal(0.02)
ACTIVATIONS = {"silu": nn.silu, "gelu": gelu}
PARTITIONS = ("remote", "close")


def _bias_init(fan_in: int):
  """PyTorch's default conv bias: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  bound = fan_in ** -0.5
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


def _pointwise(features: int, fan_in: int, use_bias: bool, dtype: Dtype, name: str) -> nn.Dense:
  """A 1x1 conv as a Dense over channels, with PyTorch's default Conv2d init."""
  return nn.Dense(features, use_bias=use_bias, dtype=dtype, kernel_init=conv_init,
                  bias_init=_bias_init(fan_in), name=name)


def _conv(features: int, kernel: int, stride: int, groups: int, fan_in: int, use_bias: bool,
          dtype: Dtype, name: str) -> nn.Conv:
  """k x k conv with the official padding ceil((k - s) / 2) = k // 2 on every side."""
  pad = -(-(kernel - stride) // 2)
  return nn.Conv(features, (kernel, kernel), stride, padding=((pad, pad), (pad, pad)),
                 feature_group_count=groups, use_bias=use_bias, dtype=dtype,
                 kernel_init=conv_init, bias_init=_bias_init(fan_in), name=name)


def _batch_norm(train: bool, dtype: Dtype, name: str) -> nn.BatchNorm:
  """BatchNorm2d(eps=1e-6) with PyTorch's momentum 0.1 (0.9 here)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=EPS, dtype=dtype,
                      name=name)


def _layer_norm(dtype: Dtype, name: str) -> nn.LayerNorm:
  """LayerNorm over channels (the official LayerNorm2d), eps 1e-6."""
  return nn.LayerNorm(epsilon=EPS, use_fast_variance=False, dtype=dtype, name=name)


# ---------------------------------------------------------------- window attention


def pad_to_window(x: jax.Array, window: int) -> jax.Array:
  """[B, H, W, C] -> zero-padded at the bottom and right to multiples of `window`."""
  h, w = x.shape[1:3]
  return jnp.pad(x, ((0, 0), (0, -h % window), (0, -w % window), (0, 0)))


def partition(x: jax.Array, window: int, kind: str) -> jax.Array:
  """[B, n1 w, n2 w, C] -> [B, n1 n2, w w, C]: the windows of `kind`, row-major.

  close: window (a, b) holds rows a w + i and columns b w + j (contiguous);
  remote: window (a, b) holds rows i n1 + a and columns j n2 + b (a grid with
  steps n1, n2), for i, j < w.
  """
  b, hp, wp, c = x.shape
  n1, n2 = hp // window, wp // window
  if kind == "close":
    x = x.reshape(b, n1, window, n2, window, c).transpose(0, 1, 3, 2, 4, 5)
  elif kind == "remote":
    x = x.reshape(b, window, n1, window, n2, c).transpose(0, 2, 4, 1, 3, 5)
  else:
    raise ValueError(f"Window partition {kind!r}: choose one of {PARTITIONS}.")
  return x.reshape(b, n1 * n2, window * window, c)


def merge(x: jax.Array, window: int, kind: str, hw: Sequence[int]) -> jax.Array:
  """The inverse of `partition`: [B, n1 n2, w w, C] -> [B, H, W, C] with (H, W) = hw."""
  b, c = x.shape[0], x.shape[-1]
  n1, n2 = hw[0] // window, hw[1] // window
  x = x.reshape(b, n1, n2, window, window, c)
  order = {"close": (0, 1, 3, 2, 4, 5), "remote": (0, 3, 1, 4, 2, 5)}[kind]
  return x.transpose(order).reshape(b, hw[0], hw[1], c)


def window_attention(q: jax.Array, k: jax.Array, v: jax.Array, num_heads: int) -> jax.Array:
  """Multi-head softmax(q k^T / sqrt(d)) v inside each window: [B, N, T, C] -> [B, N, T, Cv].
  Heads are consecutive channel groups (C / heads of q and k, Cv / heads of v)."""
  b, n, t, c = q.shape
  q = q.reshape(b, n, t, num_heads, c // num_heads)
  k = k.reshape(b, n, t, num_heads, c // num_heads)
  v = v.reshape(b, n, t, num_heads, v.shape[-1] // num_heads)
  logits = jnp.einsum("bnthd,bnshd->bnhts", q, k) * (c // num_heads) ** -0.5
  attn = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
  return jnp.einsum("bnhts,bnshe->bnthe", attn, v).reshape(b, n, t, -1)


def hybrid_window_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, num_heads: int,
                            window: int, partitions: Sequence[str] = PARTITIONS) -> jax.Array:
  """Sum over `partitions` of windowed attention; q, k [B, H, W, C], v [B, H, W, Cv]
  with H and W multiples of `window` -> [B, H, W, Cv]."""
  hw = q.shape[1:3]
  if hw[0] % window or hw[1] % window:
    raise ValueError(f"A {hw} map is no whole number of {window}x{window} windows; pad it first.")
  out = None
  for kind in partitions:
    y = window_attention(*(partition(t, window, kind) for t in (q, k, v)), num_heads)
    y = merge(y, window, kind, hw)
    out = y if out is None else out + y
  return out


class HybridWindowAttention(nn.Module):
  """The i2RMB's attention expansion: qk and v 1x1 projections of the padded map,
  remote + close window attention, cropped back. [B, H, W, C] -> [B, H, W, features]."""
  features: int  # Channels of v and of the output (the block's expanded width).
  dim_head: int  # Channels per head of q and k; heads = C // dim_head.
  window: int = 7
  act: str = "gelu"  # Activation of v.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    h, w, c = x.shape[1:]
    x = pad_to_window(x, self.window)
    qk = _pointwise(2 * c, c, True, self.dtype, "qk")(x)
    v = ACTIVATIONS[self.act](_pointwise(self.features, c, True, self.dtype, "v")(x))
    y = hybrid_window_attention(qk[..., :c], qk[..., c:], v, num_heads=c // self.dim_head,
                                window=self.window)
    return y[:, :h, :w]


# ---------------------------------------------------------------- blocks and model


class IRMB(nn.Module):
  """The improved inverted residual mobile block (i2RMB; see the module docstring)."""
  features: int  # Output channels.
  expansion: float  # Expanded width = int(input channels * expansion).
  stride: int = 1
  norm: str = "batch"  # "batch" or "layer" (over channels), applied to the input.
  act: str = "silu"  # Activation of the expansion: "silu" or "gelu".
  attention: bool = False  # Hybrid window attention as the expansion, else 1x1 conv + act.
  dim_head: int = 32
  window: int = 7
  kernel_size: int = 5  # Depthwise conv.
  drop_path_rate: float = 0.
  layer_scale: float = 1e-6  # Initial gamma.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    c_in = x.shape[-1]
    mid = int(c_in * self.expansion)
    skip = self.stride == 1 and c_in == self.features
    shortcut = x
    if self.norm == "batch":
      x = _batch_norm(train, self.dtype, "norm")(x)
    else:
      x = _layer_norm(self.dtype, "norm")(x)
    if self.attention:
      x = HybridWindowAttention(mid, self.dim_head, self.window, self.act, self.dtype,
                                name="attn")(x)
    else:
      x = ACTIVATIONS[self.act](_pointwise(mid, c_in, True, self.dtype, "expand")(x))
    k = self.kernel_size
    y = _conv(mid, k, self.stride, mid, k * k, False, self.dtype, "dw")(x)
    y = nn.silu(_batch_norm(train, self.dtype, "dw_norm")(y))
    x = x + y if skip else y
    x = _pointwise(self.features, mid, False, self.dtype, "proj")(x)
    gamma = self.param("gamma", nn.initializers.constant(self.layer_scale), (self.features,))
    x = x * jnp.asarray(gamma, self.dtype)
    return shortcut + DropPath(self.drop_path_rate)(x, train=train) if skip else x


class EMO2(nn.Module):
  """EMOv2 classifier or (`features_only`) dense-prediction backbone; NHWC in."""
  depths: Sequence[int]  # Blocks per stage.
  embed_dims: Sequence[int]  # Channels per stage.
  exp_ratios: Sequence[float]  # Expansion per stage (x2 in each stage's block 0).
  dim_heads: Sequence[int]  # Channels per q/k head per stage (attention stages only).
  attention: Sequence[bool] = (False, False, True, True)  # Stages whose blocks >= 1 attend.
  norms: Sequence[str] = ("batch", "batch", "layer", "layer")
  acts: Sequence[str] = ("silu", "silu", "gelu", "gelu")
  kernel_size: int = 5  # Depthwise convs of every block.
  window_size: int = 7  # 7 for 224 inputs, 8 for the official 256/512 variants.
  drop_path_rate: float = 0.  # Stochastic depth, linear from 0 over all blocks.
  layer_scale: float = 1e-6
  num_classes: int = 1000  # 0: no head; the output is the pooled features.
  features_only: bool = False  # Backbone: the stage maps as levels C2-C5, no norm or head.
  norm_eval: bool = False  # BatchNorm on running statistics also in training.
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C2": Level(4, embed_dims[0]), ..., "C5": Level(32, embed_dims[3])}."""
    levels = [features_lib.Level(4 * 2**i, c) for i, c in enumerate(self.embed_dims)]
    return {features_lib.level_name(level.stride): level for level in levels}

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    aux, maps = {}, []
    train_norm = train and not self.norm_eval
    x = jnp.asarray(x, self.dtype)
    stem = self.embed_dims[0] // 2
    x = _conv(stem, 3, 2, 1, 9 * x.shape[-1], True, self.dtype, "stem_conv")(x)
    x = nn.silu(_batch_norm(train_norm, self.dtype, "stem_norm")(x))
    x = _conv(stem, 3, 1, stem, 9, False, self.dtype, "stem_dw")(x)
    x = nn.silu(_batch_norm(train_norm, self.dtype, "stem_dw_norm")(x))
    x = _pointwise(stem, stem, False, self.dtype, "stem_proj")(x)
    aux["stem"] = x
    rates = np.linspace(0., self.drop_path_rate, sum(self.depths))
    for i, depth in enumerate(self.depths):
      for j in range(depth):
        x = IRMB(self.embed_dims[i], self.exp_ratios[i] * (2 if j == 0 else 1),
                 stride=2 if j == 0 else 1, norm=self.norms[i], act=self.acts[i],
                 attention=bool(self.attention[i]) and j > 0, dim_head=self.dim_heads[i],
                 window=self.window_size, kernel_size=self.kernel_size,
                 drop_path_rate=float(rates[sum(self.depths[:i]) + j]),
                 layer_scale=self.layer_scale, dtype=self.dtype,
                 name=f"stage{i + 1}_{j}")(x, train=train_norm)
      aux[f"stage{i + 1}"] = x
      maps.append(x)
    if self.features_only:
      return dict(zip(self.feature_levels(), maps)), aux
    x = jnp.mean(_layer_norm(self.dtype, "norm")(x), axis=(1, 2))
    aux["pre_logits"] = x
    if self.num_classes == 0:
      return x, aux
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                      bias_init=nn.initializers.zeros, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


# Tensor parallelism over the "model" mesh axis: every conv, projection and the head
# split their output channels (HWIO / [in, out] kernels); norms, biases, gamma replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)

# The official EMO2_*_k5_hybrid configurations (224 inputs, window 7).
emo2_1m = functools.partial(EMO2, depths=(2, 2, 8, 3), embed_dims=(32, 48, 80, 180),
                            exp_ratios=(2., 2.5, 3., 3.5), dim_heads=(16, 16, 20, 20),
                            drop_path_rate=0.04036)
emo2_2m = functools.partial(EMO2, depths=(3, 3, 9, 3), embed_dims=(32, 48, 120, 200),
                            exp_ratios=(2., 2.5, 3., 3.5), dim_heads=(16, 16, 20, 20),
                            drop_path_rate=0.05)
emo2_5m = functools.partial(EMO2, depths=(3, 3, 9, 3), embed_dims=(48, 72, 160, 288),
                            exp_ratios=(2., 3., 4., 4.), dim_heads=(16, 24, 32, 32),
                            drop_path_rate=0.05)
emo2_20m = functools.partial(EMO2, depths=(3, 3, 13, 3), embed_dims=(64, 128, 320, 448),
                             exp_ratios=(2., 3., 4., 4.), dim_heads=(16, 32, 32, 32),
                             drop_path_rate=0.1)
emo2_50m = functools.partial(EMO2, depths=(5, 8, 20, 7), embed_dims=(64, 128, 384, 512),
                             exp_ratios=(2., 3., 4., 4.), dim_heads=(16, 32, 32, 32),
                             drop_path_rate=0.2)
