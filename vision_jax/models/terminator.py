"""Terminator (Harvie Zhang, 2024, "HyperZ·Z·W Operator Connects Slow-Fast
Networks for Full Context Interaction", arXiv:2401.17948; official code
hyperevolnet/Terminator, older versions of models/terminator.py and
cfg/config.yaml): a stack of SFNE blocks at full resolution, no residual
connections, no downsampling, then global average pooling and a linear
classifier.

Blocks (terminator_blocks.py) widen C -> C · bottleneck_factor; block i
concatenates the outputs of blocks i-2, i-3, ... (`num_concat_pre[i]` of them),
tiled along channels to its input width. The CIFAR-10 network of
cfg/config.yaml: 5 blocks, in_channels 3, 12, 36, 72, 144, bottleneck factors
4, 3, 2, 2, 2 (-> 288 features), num_concat_pre 0, 0, 1, 1, 2, Dropout2d 0,
.05, .05, .05, .05; global slow nets (MAGNet, 32 x 32 grid, hidden 64) with
3, 2, 2, 2, 2 layers; local slow nets hidden 32, 2 layers, kernels 3, 9, 5, 7;
hyper-channel slow net hidden 32, hyper-interaction slow nets hidden 16
(channels) and 64 (spatial), 2 layers; G-IBS in 12 groups; GELU.
Parameters (ours, no official count exists: the stored official
terminator.py is a placeholder): 1,336,855 for 10 classes at 32 x 32
(tests/models/test_terminator.py also derives it from the official layer list).

aux["slow_loss"] is the paper's slow neural loss, Σ_{j<i} mean((tile(W_g^j,
Π_{j<=m<i} f_m) - W_g^i)^2) over the blocks' global hyper-kernels, which the
official training adds to the (label-smoothed, 0.09) cross-entropy: it is also
the model's loss term aux[MODEL_LOSSES]["slow"] (x `slow_loss_weight`, 1 as
the official code), which the classification task adds to its loss.

Deliberate differences from the official code:
- The official Terminator_image adds per-block `fast_bias` scalars kept in a
  Python list (never registered, so never trained: always zero); omitted.
- Where versions disagree (HyperZZW_G, ω_0 unset in the config), see
  vision_jax/layers/hyperzzw.py; `num_concat_pre` > 2 puts the extra earlier
  outputs just before the hyper-interaction branch (the official code has at
  most two).
- Parameters are float32; the fast net computes in `dtype`, the slow nets in
  float32.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.layers import hyperzzw as hz
from vision_jax.models import terminator_blocks as blocks
from vision_jax.tasks.base import MODEL_LOSSES

Dtype = Any


def slow_neural_loss(kernels: Sequence[jax.Array], factors: Sequence[int]) -> jax.Array:
  """Σ_{j<i} mean((tile(K_j, Π f_j..f_{i-1}) - K_i)^2); K_i [S, S, C_i]."""
  loss = jnp.zeros((), jnp.float32)
  for i in range(1, len(kernels)):
    for j in range(i):
      reps = 1
      for f in factors[j:i]:
        reps *= f
      loss = loss + jnp.mean(jnp.square(jnp.tile(kernels[j], (1, 1, reps)) - kernels[i]))
  return loss


class Terminator(nn.Module):
  """`__call__(images [B, S, S, C], train=...)` -> (logits, aux)."""
  num_classes: int = 10  # 0: no head; the output is the pooled features.
  image_size: int = 32  # S: inputs are S x S; the grid of the global slow nets.
  in_channels: Sequence[int] = (3, 12, 36, 72, 144)  # Input width of each block.
  bottleneck_factors: Sequence[int] = (4, 3, 2, 2, 2)  # Block i: C_i -> C_i · f_i.
  num_concat_pre: Sequence[int] = (0, 0, 1, 1, 2)  # Earlier outputs block i concatenates.
  dropout: Sequence[float] = (0.0, 0.05, 0.05, 0.05, 0.05)  # Dropout2d per block.
  global_layers: Sequence[int] = (3, 2, 2, 2, 2)  # Layers of each block's global slow net.
  global_hidden: int = 64
  local_hidden: int = 32
  local_layers: int = 2
  local_kernel_sizes: Sequence[int] = (3, 9, 5, 7)
  hci_hidden: int = 32
  hi_hidden_c: int = 16
  hi_hidden_s: int = 64
  interact_layers: int = 2
  gibs_groups: int = 12
  omega_0: float = hz.OMEGA_0
  slow_loss_weight: float = 1.0  # Of the slow neural loss in the training loss.
  dtype: Dtype = jnp.float32  # Compute dtype of the fast net; parameters stay float32.

  def _check(self, x):
    n = len(self.in_channels)
    for name in ("bottleneck_factors", "num_concat_pre", "dropout", "global_layers"):
      if len(getattr(self, name)) != n:
        raise ValueError(f"{name}={getattr(self, name)}: one entry per block ({n}).")
    for i in range(n - 1):
      if self.in_channels[i + 1] != self.in_channels[i] * self.bottleneck_factors[i]:
        raise ValueError(f"in_channels[{i + 1}]={self.in_channels[i + 1]} must be in_channels[{i}]"
                         f" x bottleneck_factors[{i}] = {self.in_channels[i] * self.bottleneck_factors[i]}.")
    for i, k in enumerate(self.num_concat_pre):
      if k > max(i - 1, 0):
        raise ValueError(f"num_concat_pre[{i}]={k}: block {i} has only {max(i - 1, 0)} outputs "
                         "two or more blocks back.")
    if x.shape[1:] != (self.image_size, self.image_size, self.in_channels[0]):
      raise ValueError(f"Terminator built for {self.image_size}x{self.image_size}x"
                       f"{self.in_channels[0]} images, got {x.shape[1:]}.")

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    self._check(x)
    x = jnp.asarray(x, self.dtype)
    aux, outs, kernels = {}, [], []
    for i in range(len(self.in_channels)):
      earlier = [outs[i - 2 - j] for j in range(self.num_concat_pre[i])]
      x, hk = blocks.SFNEBlock(
          self.bottleneck_factors[i], self.image_size, self.global_layers[i], self.global_hidden,
          self.local_hidden, self.local_layers, tuple(self.local_kernel_sizes), self.hci_hidden,
          self.hi_hidden_c, self.hi_hidden_s, self.interact_layers, self.gibs_groups,
          self.dropout[i], self.omega_0, self.dtype, name=f"block{i + 1}")(x, earlier, train=train)
      outs.append(x)
      kernels.append(hk)
      aux[f"block{i + 1}"] = x
      aux[f"global_kernel{i + 1}"] = hk
    aux["slow_loss"] = slow_neural_loss(kernels, self.bottleneck_factors)
    aux[MODEL_LOSSES] = {"slow": self.slow_loss_weight * aux["slow_loss"]}
    x = jnp.mean(x, axis=(1, 2))
    aux["pre_logits"] = x
    if self.num_classes == 0:
      return x, aux
    logits = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=blocks.KAIMING_NORMAL,
                      bias_init=nn.initializers.zeros, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


# Tensor parallelism over the "model" mesh axis: every 1x1 conv / linear splits its
# output features (dims that do not divide stay replicated); grid biases replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)

terminator = functools.partial(Terminator)
