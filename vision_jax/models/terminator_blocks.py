"""The SFNE block of Terminator and its branches (Harvie Zhang, 2024,
arXiv:2401.17948; official hyperevolnet/Terminator models/modules/
{fast_multi_branch,sfne_block,rgu,local_conv,hyper_interact,g_ibs}.py), NHWC.

Standardisation (the paper's replacement of normalisation): no affine
parameters, no running statistics, eps 1e-5, biased variance; the "batch"
kind (torch BatchNorm2d with track_running_stats=False) uses the statistics
of the batch at hand in training and evaluation alike, so an evaluation
batch's composition (padded examples included) changes its outputs.

One block, with x [B, S, S, C] (S = the slow nets' grid size) and IS/BS the
instance/batch standardisation:

    W_g = SlowNet_G()                           global hyper-kernel [S, S, C]
    ctx = x ⊙ W_g
    fast = IS(RGU_2(ctx) + RGU_1(x));  mix = IS(W_m x);  hci = IS(HCI(x))
    out, out_x, out_hci = ctx @ fast, ctx @ mix, ctx @ hci      (global products)
    glu = σ(out) ⊙ out;  hyper = HI(out, x)
    local_i = GELU(BS(W_i DWConv(z_i, SlowNet_L_i(c_i)))) + b_i  with
      (c, z) = (x, hci), (hci, x), (mix, x), (x, mix) for k = 3, 9, 5, 7
    y = W_b concat[out, local_2, p_1, fast, out_x, local_1, glu, local_3, out_hci,
                   local_4, p_2.., hyper]                     (1x1 bottleneck to C·f)
    y = Dropout2d(GELU(G-IBS(y)) + b)

p_j: earlier blocks' outputs tiled along channels to C (`num_concat_pre`).
RGU(x) = W_y(GELU(IS(W_k x ⊙ W_q W_v x)) + β_S), β_S a learned S x S map.
HCI(x) = x ⊙ σ(HyperZZW_2E(w_c, mean_HW x)) with a 1-D slow net w_c over the C
channels; HI(y, x) = x ⊙ σ(HyperZZW_2E(w_s, mean_C y) ⊙ HyperZZW_2E(w_c, mean_HW y)).
G-IBS: the channels in `groups` equal groups, batch-standardised (even groups)
and instance-standardised (odd ones).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.layers import hyperzzw as hz

Dtype = Any
EPS = 1e-5
KAIMING_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # torch default.


def _standardize(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
  x32 = x.astype(jnp.float32)
  mean = jnp.mean(x32, axis=axes, keepdims=True)
  var = jnp.mean(jnp.square(x32 - mean), axis=axes, keepdims=True)
  return ((x32 - mean) * jax.lax.rsqrt(var + EPS)).astype(x.dtype)


def batch_standardize(x: jax.Array) -> jax.Array:
  """Per channel over (batch, H, W): BatchNorm2d(affine=False, no running stats)."""
  return _standardize(x, (0, 1, 2))


def instance_standardize(x: jax.Array) -> jax.Array:
  """Per example and channel over (H, W): InstanceNorm2d(affine=False)."""
  return _standardize(x, (1, 2))


def group_ibs(x: jax.Array, groups: int) -> jax.Array:
  """G-IBS: split channels into `groups` equal groups; batch-standardise the
  even ones, instance-standardise the odd ones."""
  channels = x.shape[-1]
  if channels % groups:
    raise ValueError(f"G-IBS: {channels} channels do not split into {groups} equal groups.")
  parts = jnp.split(x, groups, axis=-1)
  return jnp.concatenate([batch_standardize(p) if i % 2 == 0 else instance_standardize(p)
                          for i, p in enumerate(parts)], axis=-1)


def _dense(features: int, dtype: Dtype, name: str, kernel_init=KAIMING_NORMAL):
  """A 1x1 conv (the official Linear2d) with a zero bias."""
  return nn.Dense(features, dtype=dtype, kernel_init=kernel_init,
                  bias_init=nn.initializers.zeros, name=name)


class RGU(nn.Module):
  """Recursive gated unit: y = W_y(GELU(IS(W_k x ⊙ W_q W_v x)) + β_S)."""
  size: int  # S: the learned bias map is S x S.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    lin = lambda name: _dense(c, self.dtype, name, hz.HE_UNIFORM_LINEAR)
    k, v = lin("k")(x), lin("v")(x)
    bias = self.param("bias_map", nn.initializers.zeros, (self.size, self.size))
    q = hz.GELU(instance_standardize(k * lin("q")(v))) + bias[..., None].astype(self.dtype)
    return lin("y")(q)


class HyperChannelInteract(nn.Module):
  """x ⊙ σ(HyperZZW_2E(w_c, mean_HW x)), w_c from a 1-D slow net over channels."""
  hidden: int = 32
  num_layers: int = 2
  omega_0: float = hz.OMEGA_0

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    w_c = hz.MAGNet((c,), 1, self.hidden, self.num_layers, self.omega_0, name="slow_c")()[:, 0]
    y = jnp.mean(x, axis=(1, 2))
    score = jax.nn.sigmoid(hz.hyperzzw_2e(w_c.astype(x.dtype), y))
    return x * score[:, None, None, :]


class HyperInteract(nn.Module):
  """x ⊙ σ(HyperZZW_2E(w_s, mean_C y) ⊙ HyperZZW_2E(w_c, mean_HW y))."""
  size: int  # S of the spatial slow net.
  hidden_c: int = 16
  hidden_s: int = 64
  num_layers: int = 2
  omega_0: float = hz.OMEGA_0

  @nn.compact
  def __call__(self, y, x):
    c = y.shape[-1]
    w_c = hz.MAGNet((c,), 1, self.hidden_c, self.num_layers, self.omega_0, name="slow_c")()[:, 0]
    w_s = hz.MAGNet((self.size, self.size), 1, self.hidden_s, self.num_layers, self.omega_0,
                    name="slow_s")()[..., 0]
    score_c = hz.hyperzzw_2e(w_c.astype(y.dtype), jnp.mean(y, axis=(1, 2)))  # [B, C]
    score_s = hz.hyperzzw_2e(w_s.astype(y.dtype), jnp.mean(y, axis=-1))  # [B, S, S]
    return x * jax.nn.sigmoid(score_s[..., None] * score_c[:, None, None, :])


class LocalBranch(nn.Module):
  """Local HyperZ·Z·W: GELU(BS(W_m DWConv(z, SlowNet_L(context)))) + b."""
  kernel_size: int
  hidden: int = 32
  num_layers: int = 2
  omega_0: float = hz.OMEGA_0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, context, z):
    hk = hz.LocalSlowNet(self.kernel_size, self.hidden, self.num_layers, self.omega_0,
                         name="slow")(context)
    y = hz.hyperzzw_local(hk, z)
    y = _dense(z.shape[-1], self.dtype, "mixer")(y)
    y = hz.GELU(batch_standardize(y))
    return y + self.param("bias", nn.initializers.zeros, (1,)).astype(y.dtype)


class SFNEBlock(nn.Module):
  """Slow-fast neural encoding block: C -> C · bottleneck_factor channels."""
  bottleneck_factor: int
  size: int  # S: grid of the global slow nets and RGU bias maps; inputs are S x S.
  global_layers: int = 2  # L of the global slow net.
  global_hidden: int = 64
  local_hidden: int = 32
  local_layers: int = 2
  local_kernel_sizes: Sequence[int] = (3, 9, 5, 7)
  hci_hidden: int = 32  # Hyper-channel interaction slow net (kernel_gc).
  hi_hidden_c: int = 16  # Hyper interaction, channel slow net (kernel_gc_hi).
  hi_hidden_s: int = 64  # Hyper interaction, spatial slow net (kernel_gs_hi).
  interact_layers: int = 2  # L of those three.
  gibs_groups: int = 12
  dropout: float = 0.0  # Dropout2d (whole channels).
  omega_0: float = hz.OMEGA_0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, earlier: Sequence[jax.Array] = (), *, train: bool = False):
    """x [B, S, S, C], `earlier` outputs of earlier blocks (channels dividing C)
    -> (y [B, S, S, C·f], global hyper-kernel [S, S, C])."""
    b, h, w, c = x.shape
    if h != self.size or w != self.size:
      raise ValueError(f"SFNE block built for {self.size}x{self.size} maps, got {h}x{w}.")
    if len(self.local_kernel_sizes) != 4:
      raise ValueError(f"local_kernel_sizes: four sizes, got {self.local_kernel_sizes}.")
    hk = hz.MAGNet((self.size, self.size), c, self.global_hidden, self.global_layers,
                   self.omega_0, name="slow_global")()
    ctx_hk = hk.astype(x.dtype)
    ctx = x * ctx_hk
    fast = instance_standardize(RGU(self.size, self.dtype, name="rgu_slow")(ctx)
                                + RGU(self.size, self.dtype, name="rgu_fast")(x))
    mix = instance_standardize(_dense(c, self.dtype, "mixer")(x))
    hci = instance_standardize(HyperChannelInteract(self.hci_hidden, self.interact_layers,
                                                    self.omega_0, name="hci")(x))
    out = hz.hyperzzw_global(ctx_hk, x, fast)
    out_x = hz.hyperzzw_global(ctx_hk, x, mix)
    out_hci = hz.hyperzzw_global(ctx_hk, x, hci)
    glu = jax.nn.sigmoid(out) * out
    hyper = HyperInteract(self.size, self.hi_hidden_c, self.hi_hidden_s, self.interact_layers,
                          self.omega_0, name="hyper_interact")(out, x)
    local = [LocalBranch(k, self.local_hidden, self.local_layers, self.omega_0, self.dtype,
                         name=f"local{i + 1}")(context, z)
             for i, (k, (context, z)) in enumerate(zip(
                 self.local_kernel_sizes, ((x, hci), (hci, x), (mix, x), (x, mix))))]
    pre = []
    for p in earlier:
      if c % p.shape[-1]:
        raise ValueError(f"An earlier output of {p.shape[-1]} channels does not tile to {c}.")
      pre.append(jnp.tile(p.astype(x.dtype), (1, 1, 1, c // p.shape[-1])))
    y = jnp.concatenate([out, local[1], *pre[:1], fast, out_x, local[0], glu, local[2], out_hci,
                         local[3], *pre[1:], hyper], axis=-1)
    y = _dense(c * self.bottleneck_factor, self.dtype, "bottleneck")(y)
    y = hz.GELU(group_ibs(y, self.gibs_groups))
    y = y + self.param("bias", nn.initializers.zeros, (1,)).astype(y.dtype)
    if self.dropout:
      y = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(y)
    return y, hk
