"""Dense Feature Pyramid Network of CATNet (Liu et al., "Learning to Aggregate
Multi-Scale Context for Instance Segmentation in Remote Sensing Images",
IEEE TNNLS 2024, arXiv:2111.11057), as the official `DenseFPN` (mmdet 3).

Laterals L_i: 1x1 conv + BN (no activation) per input level; extra levels by
chained 3x3 stride-2 conv + BN on the last lateral. Then `stack_times`
stacks, each (for L levels, i = 0 finest):
  top-down   T_i = B_i(ReLU(L_i + sum_{j=0}^{L-i-2} a^i_j up(L_{L-1-j})))
  bottom-up  U_i = B_{L+i}(ReLU(L_i + T_i + sum_{j<i} b^i_j maxpool(T_j)))
and L <- U: dense over all coarser laterals (bilinear up-sampling) and all
finer top-down maps (adaptive max pooling). a^i = softmax(w^i) for i < L-2
(a = 1 for i = L-2), b^i = softmax(v^i) for i > 1 (b = 1 for i = 1); the
vectors w, v (initialised to ones) are shared by the stacks, the blocks B
(1x1 C->C/2, 3x3, 1x1 C/2->C, each conv + BN, no activation) are not.
Conv kernels use Caffe2Xavier (kaiming uniform, a=1); every conv is bias-free
(it is followed by BN). Parameter counts: dense.md Sec. 6 (P3-P7 on
ResNet-50 C3-C5: 12,800,530).
"""
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.models import features as features_lib

Dtype = Any
caffe2_xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


def resize_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """PyTorch `interpolate(mode='bilinear', align_corners=False, size=...)` of
  [B, H, W, C]: source coordinate max((i + 0.5) * in / out - 0.5, 0)."""
  def axis(n_in, n_out):
    src = np.maximum((np.arange(n_out, dtype=np.float32) + 0.5) * np.float32(n_in / n_out) - 0.5, 0)
    lo = np.floor(src).astype(np.int32)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (src - lo).astype(np.float32)

  (h, w), (out_h, out_w) = x.shape[1:3], size
  lo, hi, frac = axis(h, out_h)
  frac = jnp.asarray(frac, x.dtype)[None, :, None, None]
  x = x[:, lo] * (1 - frac) + x[:, hi] * frac
  lo, hi, frac = axis(w, out_w)
  frac = jnp.asarray(frac, x.dtype)[None, None, :, None]
  return x[:, :, lo] * (1 - frac) + x[:, :, hi] * frac


def _pool_bins(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, K] source indices of PyTorch's adaptive bins floor(i * in / out) ..
  ceil((i + 1) * in / out) (exclusive), short bins padded with their last index."""
  i = np.arange(n_out)
  start, end = (i * n_in) // n_out, -(-((i + 1) * n_in) // n_out)
  k = int((end - start).max())
  return np.minimum(start[:, None] + np.arange(k), end[:, None] - 1)


def adaptive_max_pool(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """PyTorch `adaptive_max_pool2d(x, size)` of [B, H, W, C] (separable: rows, then columns)."""
  (h, w), (out_h, out_w) = x.shape[1:3], size
  x = x[:, _pool_bins(h, out_h)].max(axis=2)
  return x[:, :, _pool_bins(w, out_w)].max(axis=3)


class ConvBN(nn.Module):
  """mmcv `ConvModule` with a norm and no activation: bias-free conv + BatchNorm
  (PyTorch defaults: momentum 0.1 there = 0.9 here, eps 1e-5)."""
  features: int
  kernel: int = 1
  strides: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    pad = self.kernel // 2
    x = nn.Conv(self.features, (self.kernel, self.kernel), self.strides,
                padding=((pad, pad), (pad, pad)), use_bias=False, dtype=self.dtype,
                kernel_init=caffe2_xavier, name="conv")(x)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                        dtype=self.dtype, name="bn")(x)


class Bottleneck(nn.Module):
  """One fusion block: 1x1 C->C/r, 3x3 C/r->C/r, 1x1 C/r->C, each ConvBN, no
  activation in between (the ReLU is on the block's input)."""
  features: int = 256
  reduction: int = 2
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    inner = max(self.features // self.reduction, 1)
    for i, (width, kernel) in enumerate([(inner, 1), (inner, 3), (self.features, 1)]):
      x = ConvBN(width, kernel, dtype=self.dtype, name=f"conv{i}")(x, train=train)
    return x


class DenseFPN(nn.Module):
  """Dense pyramid P_k.. from backbone levels of strides `in_strides` (CATNet
  RetinaNet: C3-C5, start_level 1; CAT Mask R-CNN: C2-C5) plus extra levels up
  to `num_outs` maps. Parameters: lateral{i}, extra{i}, stack{s}_td{i},
  stack{s}_bu{i}, and the shared fusion weights td_weight{i}, bu_weight{i}."""
  features: int = 256
  in_strides: Sequence[int] = (8, 16, 32)
  num_outs: int = 5
  stack_times: int = 5
  reduction: int = 2  # Bottleneck width C / reduction.
  dtype: Dtype = jnp.float32

  def feature_levels(self, inputs: Mapping[str, features_lib.Level] | None = None
                     ) -> dict[str, features_lib.Level]:
    """{"P3": Level(8, features), ...}: the pyramid this neck returns."""
    if self.num_outs < len(self.in_strides):
      raise ValueError(f"DenseFPN num_outs={self.num_outs} < {len(self.in_strides)} inputs.")
    if inputs is not None:
      features_lib.select(inputs, self.in_strides, "DenseFPN")
    strides = [self.in_strides[0] * 2**i for i in range(self.num_outs)]
    return {features_lib.level_name(s, "P"): features_lib.Level(s, self.features) for s in strides}

  def _weights(self, kind: str, level: int, n: int) -> jax.Array | None:
    """Softmax fusion weights of `level` over its n dense inputs (None: n <= 1, weight 1)."""
    if n <= 1:
      return None
    w = self.param(f"{kind}_weight{level}", nn.initializers.ones, (n,), jnp.float32)
    return jax.nn.softmax(w).astype(self.dtype)

  @nn.compact
  def __call__(self, levels: Mapping[str, jax.Array], *, train: bool = False
               ) -> dict[str, jax.Array]:
    names = self.feature_levels()
    wanted = [features_lib.level_name(s) for s in self.in_strides]
    missing = [n for n in wanted if n not in levels]
    if missing:
      raise ValueError(f"DenseFPN needs backbone levels {wanted}; got {list(levels)}.")
    lat = [ConvBN(self.features, dtype=self.dtype, name=f"lateral{i}")(levels[n], train=train)
           for i, n in enumerate(wanted)]
    for i in range(len(lat), self.num_outs):
      lat.append(ConvBN(self.features, 3, 2, self.dtype, name=f"extra{i}")(lat[-1], train=train))
    n = self.num_outs
    td_w = [self._weights("td", i, n - 1 - i) for i in range(n)]
    bu_w = [self._weights("bu", i, i) for i in range(n)]
    block = lambda name: Bottleneck(self.features, self.reduction, self.dtype, name=name)
    for s in range(self.stack_times):
      td = [None] * n
      for i in range(n - 1, -1, -1):
        size = lat[i].shape[1:3]
        fused = lat[i]
        for j in range(n - 1 - i):  # Coarsest lateral first.
          up = resize_bilinear(lat[n - 1 - j], size)
          fused = fused + (up if td_w[i] is None else td_w[i][j] * up)
        td[i] = block(f"stack{s}_td{i}")(nn.relu(fused), train=train)
      bu = []
      for i in range(n):
        size = lat[i].shape[1:3]
        fused = lat[i] + td[i]
        for j in range(i):  # Finest top-down map first.
          pooled = adaptive_max_pool(td[j], size)
          fused = fused + (pooled if bu_w[i] is None else bu_w[i][j] * pooled)
        bu.append(block(f"stack{s}_bu{i}")(nn.relu(fused), train=train))
      lat = bu
    return dict(zip(names, lat))
