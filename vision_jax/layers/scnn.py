"""Spatial message passing of SCNN (Pan et al., "Spatial As Deep: Spatial CNN
for Traffic Scene Understanding", AAAI 2018, Sec. 3.1, Eq. 1).

A feature map [B, H, W, C] is cut into slices (rows for the downward and
upward passes, columns for the rightward and leftward ones); slice by slice,
each receives the previous *updated* slice through a 1-D convolution of width
`kernel_size` along the slice and a ReLU:

  X'_0 = X_0,   X'_i = X_i + ReLU(K * X'_{i-1}),   i = 1 .. L-1   (Eq. 1)

with no bias and one kernel per direction, applied in the order D, U, R, L
("SCNN_DULR" of the official code); U and L run the same recurrence from the
last slice backwards. Each pass is one `jax.lax.scan` over the slices.

Parameters keep PyTorch-port names and HWIO layouts: "up_down" and "down_up"
are [1, w, C, C] (a 1 x w conv along W), "left_right" and "right_left"
[w, 1, C, C]. Init as the official Lua code: normal(0, sqrt(2 / (w C^2 5))).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

# (parameter name, vertical, reverse) of the passes D, U, R, L, in order.
PASSES = (("up_down", True, False), ("down_up", True, True),
          ("left_right", False, False), ("right_left", False, True))


def lua_init(kernel_size: int, channels: int):
  """normal(0, sqrt(2 / (w * C * C * 5))) of the official SCNN-gen.lua."""
  return nn.initializers.normal(stddev=(2.0 / (kernel_size * channels * channels * 5)) ** 0.5)


def _conv1d(s: jax.Array, kernel: jax.Array) -> jax.Array:
  """'Same' 1-D conv of s [B, N, C] with kernel [w, C, C'] (zero padding)."""
  return jax.lax.conv_general_dilated(s, kernel, (1,), "SAME",
                                      dimension_numbers=("NWC", "WIO", "NWC"))


def directional_pass(x: jax.Array, kernel: jax.Array, vertical: bool,
                     reverse: bool) -> jax.Array:
  """One pass of Eq. 1 over x [B, H, W, C] with kernel [w, C, C]: over rows
  (conv along W) if `vertical`, else over columns (conv along H); from the
  last slice backwards if `reverse`."""
  axis = 1 if vertical else 2
  slices = jnp.moveaxis(x, axis, 0)  # [L, B, N, C].
  if reverse:
    slices = slices[::-1]

  def step(prev, s):
    out = s + nn.relu(_conv1d(prev, kernel))
    return out, out

  _, rest = jax.lax.scan(step, slices[0], slices[1:])
  out = jnp.concatenate([slices[:1], rest], axis=0)
  if reverse:
    out = out[::-1]
  return jnp.moveaxis(out, 0, axis)


class MessagePassing(nn.Module):
  """The four sequential passes D, U, R, L of Eq. 1 on an NHWC map (same shape out)."""
  kernel_size: int = 9  # Width w of the slice-to-slice conv (the paper's ms_ks).
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c, w = x.shape[-1], self.kernel_size
    x = jnp.asarray(x, self.dtype)
    init = lua_init(w, c)
    for name, vertical, reverse in PASSES:
      shape = (1, w, c, c) if vertical else (w, 1, c, c)
      kernel = self.param(name, init, shape)
      kernel = jnp.asarray(kernel.reshape(w, c, c), self.dtype)
      x = directional_pass(x, kernel, vertical, reverse)
    return x
