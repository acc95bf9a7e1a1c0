"""Spatial Context Pyramid of CATNet (Liu et al., "Learning to Aggregate
Multi-Scale Context for Instance Segmentation in Remote Sensing Images",
IEEE TNNLS 2024, arXiv:2111.11057), as the official `SCP` / `ContextAggregation`.

One unshared context-aggregation block per pyramid level (GCNet-like):
  a = sigmoid(W_a x),  k = softmax_HW(W_k x),  out = x + a * W_m(sum_p k_p W_v x_p)
with 1x1 convs (bias, no norm or activation) W_a, W_k: C->1, W_v, W_m: C->C;
W_a, W_k, W_v Caffe2Xavier with zero bias, W_m zero (each block starts as the
identity). Since the softmax sums to one and W_v is affine, sum_p k_p W_v x_p
= W_v(sum_p k_p x_p): W_v is applied to the pooled context, not the full map
(same function, H*W times fewer FLOPs). 132,098 parameters a level at C = 256.
"""
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.necks.dense_fpn import caffe2_xavier

Dtype = Any


class ContextAggregation(nn.Module):
  """x + sigmoid(a(x)) * m(v(sum_p softmax_HW(k(x))_p x_p)) on [B, H, W, C]."""
  features: int = 256
  reduction: int = 1  # Width of v: C / reduction.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = lambda width, name, init=caffe2_xavier: nn.Conv(
        width, (1, 1), dtype=self.dtype, kernel_init=init, name=name)
    a = jax.nn.sigmoid(conv(1, "a")(x))  # [B, H, W, 1]
    b, h, w, c = x.shape
    k = jax.nn.softmax(conv(1, "k")(x).reshape(b, h * w).astype(jnp.float32), axis=-1)
    context = jnp.einsum("bp,bpc->bc", k.astype(x.dtype), x.reshape(b, h * w, c))
    v = conv(max(self.features // self.reduction, 1), "v")(context[:, None, None])
    m = conv(self.features, "m", nn.initializers.zeros)(v)  # [B, 1, 1, C]
    return x + a * m


class SCP(nn.Module):
  """A ContextAggregation block per level (block{i}), same names and shapes out."""
  features: int = 256
  num_levels: int = 5
  reduction: int = 1
  dtype: Dtype = jnp.float32

  def feature_levels(self, inputs: Mapping[str, features_lib.Level]
                     ) -> dict[str, features_lib.Level]:
    """The input pyramid itself, after checking its size and widths."""
    if len(inputs) != self.num_levels or any(l.channels != self.features for l in inputs.values()):
      raise ValueError(f"SCP takes {self.num_levels} levels of {self.features} channels; got "
                       f"{ {n: l.channels for n, l in inputs.items()} }.")
    return dict(inputs)

  @nn.compact
  def __call__(self, levels: Mapping[str, jax.Array], *, train: bool = False
               ) -> dict[str, jax.Array]:
    del train  # No norm or dropout.
    if len(levels) != self.num_levels:
      raise ValueError(f"SCP takes {self.num_levels} levels; got {list(levels)}.")
    return {name: ContextAggregation(self.features, self.reduction, self.dtype,
                                     name=f"block{i}")(x)
            for i, (name, x) in enumerate(levels.items())}
