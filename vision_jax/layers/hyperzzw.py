r"""HyperZ·Z·W operators and the coordinate-MLP slow nets that write their
hyper-kernels (Harvie Zhang, 2024, "HyperZ·Z·W Operator Connects Slow-Fast
Networks for Full Context Interaction", arXiv:2401.17948; official code
hyperevolnet/Terminator, models/modules/{hyperzzw,magnet,slow_net}.py).

Slow net (paper Sec. 3, a MAGNet: multiplicative anisotropic Gabor network).
Over a grid of coordinates c in [-1, 1]^d (linspace per axis, 'ij' order),

    h_0 = sin(W_0^f c + b_0^f)
    h_l = sin(W_l^f c + b_l^f) ⊙ (W_l h_{l-1} + b_l) + β,     l = 1..L
    K   = W_out h_L + b_out

with β a learned map over the grid shared by every hidden unit. Gabor-like
init: W_l^f = U(-1/√d, 1/√d) · 2π ω_0 γ, γ ~ Gamma(α / (l + 1), β_γ) per entry
(ω_0 = 2000, α = 6, β_γ = 1), b^f = 0; W_l He-uniform (linear gain), b_l = 1;
W_out He-uniform · √(1 / #coords) (Chang et al., 2020), b_out = 0.

The local (context-dependent) slow net adds, per layer l, after the sum:
s-renormalisation h ← sg(h) + 0.1 · h / ‖h‖ (‖·‖ over the k x k grid per hidden
unit, sg = stop-gradient as the official `.data.clone()`), then modulation
h ← h ⊙ (W_l^x g + b_l^x) by the context g = GELU(W_1 mean_batch(W_r
AdaptiveAvgPool_k(x) + b_r) + b_1), so the k x k kernel depends on the batch.

Operators, NHWC (Z = hidden activations, W = hyper-kernel):

    global  HyperZ·Z·W:  ctx = Z ⊙ W_g;  out = ctx @ Z'   (matrix product over
            the two spatial dims per channel: out[h, w] = Σ_j ctx[h, j] Z'[j, w];
            the official fast_multi_branch.py; needs H == W)
    local   HyperZ·Z·W:  out = DepthwiseConv(Z, W_l), groups = C, 'same' zero
            padding (k - 1) / 2, cross-correlation as torch's conv2d
    HyperZZW_2E:         out = (Z ⊙ W) ⊙ Z

Where the older official versions disagree: hyperzzw.py's `HyperZZW_G` once
returned W_g @ Z (no elementwise step) and once (Z ⊙ W_g) @ Z; we follow the
block code (fast_multi_branch.py), (Z ⊙ W_g) @ Z' with Z' another branch's
activation. The config file leaves ω_0 unset; we take magnet.py's default
2000. The s-renormalisation's α = 1, β = 0.1 are plain Python lists in the
official MAGNet_L, so never trained: here they are constants too.

Slow nets compute in float32 whatever the fast net's dtype: sin of arguments
of order 1e4 (ω_0 = 2000) has no precision left in bfloat16.
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers.activations import gelu

OMEGA_0 = 2000.0  # magnet.py's default; cfg/config.yaml sets none.
GELU = gelu  # torch.nn.GELU (erf).


def coordinate_grid(sizes: Sequence[int]) -> np.ndarray:
  """[*sizes, d] coordinates, each axis linspace(-1, 1, size), 'ij' order."""
  axes = [np.linspace(-1.0, 1.0, s, dtype=np.float32) for s in sizes]
  return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)


def adaptive_pool_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] averaging matrix of torch's adaptive_avg_pool along one
  axis: bin i spans [floor(i n / m), ceil((i + 1) n / m))."""
  m = np.zeros((size_out, size_in), np.float32)
  for i in range(size_out):
    start = (i * size_in) // size_out
    end = -((-(i + 1) * size_in) // size_out)
    m[i, start:end] = 1.0 / (end - start)
  return m


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """torch.nn.functional.adaptive_avg_pool2d(x, size) for NHWC `x`."""
  ph = jnp.asarray(adaptive_pool_matrix(x.shape[1], size), x.dtype)
  pw = jnp.asarray(adaptive_pool_matrix(x.shape[2], size), x.dtype)
  return jnp.einsum("ih,bhwc,jw->bijc", ph, x, pw)


def hyperzzw_global(hk: jax.Array, z: jax.Array, z2: jax.Array) -> jax.Array:
  """(z ⊙ hk) @ z2 over the spatial dims: hk [H, W, C] (or broadcastable),
  z, z2 [B, H, W, C] with H == W -> [B, H, W, C]."""
  if z.shape[1] != z.shape[2] or z2.shape[1] != z2.shape[2]:
    raise ValueError(f"The global HyperZ·Z·W product needs square maps, got {z.shape}, {z2.shape}.")
  ctx = z * hk
  return jnp.einsum("bhjc,bjwc->bhwc", ctx, z2)


def hyperzzw_local(hk: jax.Array, z: jax.Array) -> jax.Array:
  """Depthwise cross-correlation of z [B, H, W, C] with hk [k, k, C], zero
  'same' padding (k odd) -> [B, H, W, C]."""
  k = hk.shape[0]
  if hk.shape[1] != k or k % 2 == 0:
    raise ValueError(f"Local hyper-kernels are odd k x k, got {hk.shape[:2]}.")
  pad = (k - 1) // 2
  return jax.lax.conv_general_dilated(
      z, hk[:, :, None, :].astype(z.dtype), window_strides=(1, 1),
      padding=((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=z.shape[-1])


def hyperzzw_2e(hk: jax.Array, z: jax.Array) -> jax.Array:
  """HyperZZW_2E: (z ⊙ hk) ⊙ z."""
  return (z * hk) * z


def gamma_sample(key: jax.Array, a: float, shape: Sequence[int], candidates: int = 16,
                 dtype=jnp.float32) -> jax.Array:
  """Gamma(a, 1) samples by Marsaglia & Tsang (2000) without loops: each entry
  takes the first accepted of `candidates` proposals (acceptance >= 0.95, so
  all rejected has probability < 1e-20); normals by Box-Muller; a < 1 through
  Gamma(a + 1) U^(1/a). One uniform draw in all: jax.random.gamma's while loop
  and every extra draw cost compile time at each of the many call sites."""
  r = jax.random.uniform(key, (3 * candidates + 1, *shape), dtype, minval=1e-12)
  r1, r2, u = r[:candidates], r[candidates:2 * candidates], r[2 * candidates:-1]
  z = jnp.sqrt(-2.0 * jnp.log(r1)) * jnp.cos(2.0 * math.pi * r2)
  a_eff = a + 1.0 if a < 1.0 else a
  d = a_eff - 1.0 / 3.0
  c = 1.0 / math.sqrt(9.0 * d)
  v = (1.0 + c * z) ** 3
  log_v = jnp.log(jnp.where(v > 0, v, 1.0))
  accept = (v > 0) & (jnp.log(u) < 0.5 * z * z + d - d * v + d * log_v)
  first = jnp.argmax(accept, axis=0)
  x = d * jnp.take_along_axis(v, first[None], axis=0)[0]
  return x * r[-1] ** (1.0 / a) if a < 1.0 else x


def _gabor_init(omega_0: float, alpha: float, beta: float):
  """W^f = U(-1/√d, 1/√d) · 2π ω_0 γ, γ ~ Gamma(alpha, rate beta) per entry."""
  def init(key, shape, dtype=jnp.float32):
    ku, kg = jax.random.split(key)
    bound = 1.0 / math.sqrt(shape[0])
    u = jax.random.uniform(ku, shape, dtype, -bound, bound)
    gamma = gamma_sample(kg, alpha, shape, dtype=dtype) / beta
    return u * 2.0 * math.pi * omega_0 * gamma
  return init


def _scaled(init, factor: float):
  return lambda key, shape, dtype=jnp.float32: init(key, shape, dtype) * factor


HE_UNIFORM_LINEAR = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")


class MAGNet(nn.Module):
  """Coordinate MLP over a fixed grid -> [*grid, features] (the equations above).
  `modulations` (one [*grid, hidden] per layer) and `renorm` make it the
  context-dependent local slow net."""
  grid: Sequence[int]  # Grid sizes, e.g. (32, 32) or (C,) for a 1-D channel grid.
  features: int  # Output channels of the hyper-kernel.
  hidden: int = 64
  num_layers: int = 2  # L: hidden linears; L + 1 Gabor filters.
  omega_0: float = OMEGA_0
  alpha: float = 6.0
  beta: float = 1.0
  renorm: float | None = None  # s-renormalisation weight (0.1 in the local net); None: off.

  @nn.compact
  def __call__(self, modulations: Sequence[jax.Array] | None = None) -> jax.Array:
    coords = jnp.asarray(coordinate_grid(self.grid))
    d, count = coords.shape[-1], int(np.prod(self.grid))
    grid_bias = self.param("grid_bias", nn.initializers.zeros, tuple(self.grid))[..., None]

    def gabor(layer):
      return jnp.sin(nn.Dense(self.hidden, name=f"filter{layer}",
                              kernel_init=_gabor_init(self.omega_0, self.alpha / (layer + 1),
                                                      self.beta),
                              bias_init=nn.initializers.zeros)(coords))

    h = gabor(0)
    for layer in range(1, self.num_layers + 1):
      lin = nn.Dense(self.hidden, kernel_init=HE_UNIFORM_LINEAR, bias_init=nn.initializers.ones,
                     name=f"linear{layer - 1}")
      h = gabor(layer) * lin(h) + grid_bias
      if self.renorm is not None:
        flat = h.reshape(-1, self.hidden)
        norm = jnp.maximum(jnp.sqrt(jnp.sum(flat * flat, axis=0)), 1e-12)
        h = jax.lax.stop_gradient(h) + self.renorm * h / norm
      if modulations is not None:
        h = h * modulations[layer - 1]
    return nn.Dense(self.features, kernel_init=_scaled(HE_UNIFORM_LINEAR, math.sqrt(1.0 / count)),
                    bias_init=nn.initializers.zeros, name="out")(h)


def _torch_default_conv_init():
  """torch Conv2d's default: kernel and bias U(-1/√fan_in, 1/√fan_in)."""
  def bias_init(fan_in):
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)
  return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), bias_init


class LocalSlowNet(nn.Module):
  """Context-dependent k x k depthwise hyper-kernel [k, k, C] from x [B, H, W, C]
  (the official MAGNet_L / SlowNet_L)."""
  kernel_size: int
  hidden: int = 32
  num_layers: int = 2
  omega_0: float = OMEGA_0
  renorm: float = 0.1  # The official (untrained) s-renormalisation β.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k, channels = self.kernel_size, x.shape[-1]
    kernel_init, bias_init = _torch_default_conv_init()
    g = adaptive_avg_pool(x.astype(jnp.float32), k)
    g = nn.Dense(self.hidden, kernel_init=kernel_init, bias_init=bias_init(channels),
                 name="context_reduce")(g)
    g = jnp.mean(g, axis=0)  # One kernel for the whole batch.
    g = GELU(nn.Dense(self.hidden, kernel_init=kernel_init, bias_init=bias_init(self.hidden),
                      name="context_fc")(g))
    modulations = [nn.Dense(self.hidden, kernel_init=HE_UNIFORM_LINEAR,
                            bias_init=nn.initializers.ones, name=f"context_linear{i}")(g)
                   for i in range(self.num_layers)]
    return MAGNet((k, k), channels, self.hidden, self.num_layers, self.omega_0,
                  renorm=self.renorm, name="magnet")(modulations)
