"""Pyramid Vision Transformer v1 (Wang et al., "Pyramid Vision Transformer: A
Versatile Backbone for Dense Prediction without Convolutions", ICCV 2021,
arXiv:2102.12122).

Four stages; stage i patchifies its input with a k = s = P_i conv (P = 4, 2, 2,
2) plus LayerNorm, adds a learned position embedding, and runs `depths[i]`
pre-norm Transformer blocks

  x = x + DropPath(SRA(LN(x))),   x = x + DropPath(MLP(LN(x))),

whose spatial-reduction attention (Sec. 3.3) is

  SRA(Q, K, V) = Concat(head_0, ..., head_N) W^O,
  head_j = Attention(Q W_j^Q, SR(K) W_j^K, SR(V) W_j^V),
  SR(x) = Norm(Reshape(x, R_i) W^S),
  Attention(q, k, v) = Softmax(q k^T / sqrt(d_head)) v.

SR is a k = s = R_i conv followed by LayerNorm (skipped when R_i = 1). The
classifier prepends a cls token in stage 4 and reads LN(x)[:, 0]; the
detection backbone (`features_only`) has no cls token, final norm or head and
returns the four stage maps as levels C2-C5 (strides 4, 8, 16, 32; the
contract of `vision_jax.models.features`), as the official detection
code does (it still allocates the 1 + 49 stage-4 position slots and uses the
last 49).

Position embeddings are learned for a `pretrain_size` input and bilinearly
resized (PyTorch's align_corners=False, no antialiasing) to each stage's own
grid, so any input size works; the official code compares every stage with the
stage-1 grid instead, which breaks e.g. at 448 (whai362/PVT issue #85).

Layout and initialisation follow the official code, so its checkpoints map one
to one (`pvt_weights.py`): LayerNorm eps is 1e-6 in blocks and the final
norm but PyTorch's default 1e-5 in patch embeddings and SR; Dense and position
embeddings ~ N(0, 0.02) (timm's trunc_normal_(std=.02) truncates at +-2
absolute, i.e. never); convs keep PyTorch's default init. Exact parameter
counts (1000 classes): tiny 13,229,288; small 24,485,864; medium 44,208,104;
large 61,369,320; features_only 514,536 fewer.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers import interpolate
from vision_jax.layers.drop_path import DropPath
from vision_jax.models import features as features_lib
from vision_jax.layers.mlp import Mlp

Dtype = Any
dense_init = nn.initializers.normal(0.02)  # = timm trunc_normal_(std=.02), bounds +-2.
embed_init = nn.initializers.normal(0.02)


def _layer_norm(epsilon: float, dtype: Dtype, name: str) -> nn.LayerNorm:
  return nn.LayerNorm(epsilon=epsilon, use_fast_variance=False, dtype=dtype, name=name)


class PatchifyConv(nn.Module):
  """Conv with kernel = stride = `size` (VALID) and PyTorch's default Conv2d init,
  computed as non-overlapping patches times a matrix: the same parameters
  ("kernel" [p, p, C_in, C_out] HWIO, "bias") as `nn.Conv`, a faster backward."""
  features: int
  size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    p, c = self.size, x.shape[-1]
    bound = (p * p * c) ** -0.5
    kernel = self.param("kernel", nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                        (p, p, c, self.features))
    bias = self.param("bias", lambda key, shape: jax.random.uniform(key, shape, jnp.float32,
                                                                   -bound, bound),
                      (self.features,))
    b, h, w = x.shape[0], x.shape[1] // p, x.shape[2] // p
    x = x[:, :h * p, :w * p].reshape(b, h, p, w, p, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, h, w, p * p * c)
    y = jnp.dot(x.astype(self.dtype), kernel.reshape(p * p * c, self.features).astype(self.dtype))
    return y + bias.astype(self.dtype)


def resize_pos_embed(pos: jax.Array, src_hw: Sequence[int], dst_hw: Sequence[int]) -> jax.Array:
  """[B, h*w, C] row-major tokens on grid `src_hw` -> [B, H*W, C] on `dst_hw`.

  Separable bilinear interpolation equal to torch.nn.functional.interpolate(
  mode="bilinear", align_corners=False) (no antialiasing, also when shrinking).
  """
  (h, w), (oh, ow) = tuple(src_hw), tuple(dst_hw)
  if (h, w) == (oh, ow):
    return pos
  grid = pos.reshape(pos.shape[0], h, w, pos.shape[-1])
  rows = jnp.asarray(interpolate.bilinear_matrix(h, oh), pos.dtype)
  cols = jnp.asarray(interpolate.bilinear_matrix(w, ow), pos.dtype)
  out = jnp.einsum("oh,bhwc,pw->bopc", rows, grid, cols, precision=jax.lax.Precision.HIGHEST)
  return out.reshape(pos.shape[0], oh * ow, pos.shape[-1])


class PatchEmbed(nn.Module):
  """Non-overlapping patches: conv (k = s = patch_size) -> LayerNorm(eps 1e-5)."""
  features: int
  patch_size: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    p = self.patch_size
    x = PatchifyConv(self.features, p, self.dtype, name="proj")(x)
    return _layer_norm(1e-5, self.dtype, "norm")(x)


ATTENTION = ("einsum", "fused")


def attention(q, k, v, kind: str):
  """Softmax(q k^T / sqrt(d)) v for q [B, N, heads, d], k/v [B, M, heads, d]
  -> [B, N, heads, d]. "einsum": batched matmuls in [B, heads, tokens, d]
  (on CPU faster to differentiate, bench/pvt_step.py), softmax in float32;
  "fused": `jax.nn.dot_product_attention`, cuDNN's fused kernel on GPUs for
  16-bit inputs, XLA's otherwise."""
  d = q.shape[-1]
  if kind == "fused":
    fused = jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
    return jax.nn.dot_product_attention(q, k, v, scale=d ** -0.5,
                                        implementation="cudnn" if fused else None)
  if kind != "einsum":
    raise ValueError(f"attention={kind!r}: choose one of {ATTENTION}.")
  q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
  logits = jnp.einsum("bhnd,bhmd->bhnm", q * jnp.asarray(d ** -0.5, q.dtype), k)
  weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)
  return jnp.einsum("bhnm,bhmd->bhnd", weights, v).transpose(0, 2, 1, 3)


class SpatialReductionAttention(nn.Module):
  """Multi-head attention whose keys/values come from an R x R-pooled grid."""
  num_heads: int
  sr_ratio: int
  drop_rate: float = 0.  # Dropout after the output projection.
  dtype: Dtype = jnp.float32
  attention: str = "einsum"  # Or "fused" (`attention`).

  @nn.compact
  def __call__(self, x, hw: Sequence[int], *, train: bool):
    b, n, c = x.shape
    d = c // self.num_heads
    dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=dense_init,
                              bias_init=nn.initializers.zeros)
    q = dense(c, name="q")(x).reshape(b, n, self.num_heads, d)
    if self.sr_ratio > 1:
      r = self.sr_ratio
      x = PatchifyConv(c, r, self.dtype, name="sr")(x.reshape(b, *hw, c))
      x = _layer_norm(1e-5, self.dtype, "norm")(x.reshape(b, -1, c))
    kv = dense(2 * c, name="kv")(x).reshape(b, -1, 2, self.num_heads, d)
    y = attention(q, kv[:, :, 0], kv[:, :, 1], self.attention)
    y = dense(c, name="proj")(y.reshape(b, n, c))
    return nn.Dropout(self.drop_rate)(y, deterministic=not train)


class Block(nn.Module):
  """Pre-norm Transformer block with SRA and an MLP; LayerNorm eps 1e-6."""
  num_heads: int
  mlp_ratio: float
  sr_ratio: int
  drop_rate: float = 0.
  drop_path_rate: float = 0.
  dtype: Dtype = jnp.float32
  attention: str = "einsum"

  @nn.compact
  def __call__(self, x, hw: Sequence[int], train: bool):
    y = _layer_norm(1e-6, self.dtype, "norm1")(x)
    y = SpatialReductionAttention(self.num_heads, self.sr_ratio, self.drop_rate, self.dtype,
                                  self.attention, name="attn")(y, hw, train=train)
    x = x + DropPath(self.drop_path_rate)(y, train=train)
    y = _layer_norm(1e-6, self.dtype, "norm2")(x)
    y = Mlp(int(x.shape[-1] * self.mlp_ratio), drop_rate=self.drop_rate, kernel_init=dense_init,
            dtype=self.dtype, name="mlp")(y, train=train)
    return x + DropPath(self.drop_path_rate)(y, train=train)


class PVT(nn.Module):
  """PVT v1 classifier or (`features_only`) dense-prediction backbone; NHWC in."""
  embed_dims: Sequence[int]  # Channels per stage.
  num_heads: Sequence[int]
  mlp_ratios: Sequence[float]
  depths: Sequence[int]  # Blocks per stage.
  sr_ratios: Sequence[int]  # Spatial reduction R_i of keys/values per stage.
  num_classes: int = 1000  # 0: no head; the output is the cls-token features.
  drop_rate: float = 0.  # Dropout after position embeddings, attention and MLP.
  drop_path_rate: float = 0.1  # Stochastic depth, linear from 0 over all blocks.
  pretrain_size: int = 224  # Input size the position embeddings are stored for.
  patch_size: int = 4  # Stage-1 patch; later stages use 2.
  features_only: bool = False  # Detection backbone: 4 maps, no cls token/norm/head.
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.
  attention: str = "einsum"  # "fused": jax.nn.dot_product_attention (`attention`).
  # Stages (1-based) whose blocks keep only their inputs for the backward pass and
  # recompute the rest (jax.checkpoint): less activation memory, ~1 more forward.
  remat_stages: Sequence[int] = ()

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C2": Level(4, embed_dims[0]), ...}: stage i has stride patch_size * 2^i."""
    levels = [features_lib.Level(self.patch_size * 2**i, c) for i, c in enumerate(self.embed_dims)]
    return {features_lib.level_name(level.stride): level for level in levels}

  def pretrain_grid(self, stage: int) -> tuple[int, int]:
    """Grid of stage `stage` (0-based) at `pretrain_size`, as the official code sizes it."""
    if stage == 0:
      side = self.pretrain_size // self.patch_size
    else:
      side = self.pretrain_size // 2 ** (stage + 1) // 2
    return side, side

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    num_stages = len(self.depths)
    with_cls = not self.features_only
    if with_cls and self.sr_ratios[-1] > 1:
      raise ValueError("The cls token of the last stage needs sr_ratios[-1] == 1.")
    if self.attention not in ATTENTION:
      raise ValueError(f"attention={self.attention!r}: choose one of {ATTENTION}.")
    if not set(self.remat_stages) <= set(range(1, num_stages + 1)):
      raise ValueError(f"remat_stages={tuple(self.remat_stages)}: stages are 1..{num_stages}.")
    rates = np.linspace(0., self.drop_path_rate, sum(self.depths))
    x = jnp.asarray(x, self.dtype)
    b = x.shape[0]
    aux, maps = {}, []
    for i in range(num_stages):
      c, last = self.embed_dims[i], i == num_stages - 1
      x = PatchEmbed(c, self.patch_size if i == 0 else 2, self.dtype,
                     name=f"patch_embed{i + 1}")(x)
      hw = x.shape[1:3]
      x = x.reshape(b, hw[0] * hw[1], c)
      grid = self.pretrain_grid(i)
      pos = self.param(f"pos_embed{i + 1}", embed_init, (1, grid[0] * grid[1] + last, c))
      pos_cls, pos = (pos[:, :1], pos[:, 1:]) if last else (None, pos)
      x = x + jnp.asarray(resize_pos_embed(pos, grid, hw), self.dtype)
      if last and with_cls:
        cls = self.param("cls_token", embed_init, (1, 1, c)) + pos_cls
        x = jnp.concatenate([jnp.broadcast_to(jnp.asarray(cls, self.dtype), (b, 1, c)), x], 1)
      x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
      first = sum(self.depths[:i])
      block = nn.remat(Block, static_argnums=(2, 3)) if i + 1 in self.remat_stages else Block
      for j in range(self.depths[i]):
        x = block(self.num_heads[i], self.mlp_ratios[i], self.sr_ratios[i], self.drop_rate,
                  float(rates[first + j]), self.dtype, self.attention,
                  name=f"block{i + 1}_{j}")(x, tuple(hw), train)
      tokens = x
      x = x[:, -hw[0] * hw[1]:].reshape(b, *hw, c)
      aux[f"stage{i + 1}"] = x
      maps.append(x)
    if self.features_only:
      return dict(zip(self.feature_levels(), maps)), aux
    x = _layer_norm(1e-6, self.dtype, "norm")(tokens)[:, 0]
    aux["pre_logits"] = x
    if self.num_classes == 0:
      return x, aux
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=dense_init,
                      bias_init=nn.initializers.zeros, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


# Tensor parallelism over the "model" mesh axis, Megatron-style: q, kv and fc1 split
# their outputs (heads, hidden units), proj and fc2 their inputs; the rest replicated.
PARTITION_RULES = (
    (r".*/attn/(q|kv)/(kernel|bias)", (..., "model")),
    (r".*/mlp/fc1/(kernel|bias)", (..., "model")),
    (r".*/(attn/proj|mlp/fc2)/kernel", (..., "model", None)),
)

_pvt = functools.partial(PVT, embed_dims=(64, 128, 320, 512), num_heads=(1, 2, 5, 8),
                         mlp_ratios=(8, 8, 4, 4), sr_ratios=(8, 4, 2, 1))
pvt_tiny = functools.partial(_pvt, depths=(2, 2, 2, 2), drop_path_rate=0.1)
pvt_small = functools.partial(_pvt, depths=(3, 4, 6, 3), drop_path_rate=0.1)
pvt_medium = functools.partial(_pvt, depths=(3, 4, 18, 3), drop_path_rate=0.3)
pvt_large = functools.partial(_pvt, depths=(3, 8, 27, 3), drop_path_rate=0.3)
