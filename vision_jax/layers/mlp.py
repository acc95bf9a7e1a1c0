"""Transformer feed-forward block (Vaswani et al., 2017; Dosovitskiy et al.,
2021): fc1 -> GELU (exact, erf form) -> dropout -> fc2 -> dropout.
"""
from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.layers.activations import gelu

Dtype = Any
Initializer = Callable[..., Any]


class Mlp(nn.Module):
  """Two Dense layers with a GELU between; parameters named fc1, fc2."""
  hidden_features: int
  out_features: Optional[int] = None  # Defaults to the input width.
  drop_rate: float = 0.
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, x, *, train: bool):
    out = self.out_features or x.shape[-1]
    dense = lambda n, name: nn.Dense(n, dtype=self.dtype, kernel_init=self.kernel_init,
                                     bias_init=nn.initializers.zeros, name=name)
    x = gelu(dense(self.hidden_features, "fc1")(x))
    x = nn.Dropout(self.drop_rate)(x, deterministic=not train)
    x = dense(out, "fc2")(x)
    return nn.Dropout(self.drop_rate)(x, deterministic=not train)
