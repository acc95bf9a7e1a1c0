"""The connectivity head of ConnNet (Kampffmeyer et al., "ConnNet: A
Long-Range Relation-Aware Pixel-Connectivity Network for Salient
Segmentation", IEEE TIP 2019, Sec. III): from the fused decoder map to one
logit per (pixel, neighbour direction), the 8 channels of the connectivity
cube in the order of `vision_jax.tasks.saliency.connectivity.OFFSETS`.

`num_convs` 3x3 conv + ReLU layers, then a 1x1 conv to 8 logits (zero bias:
probability 1/2 per channel at init).
"""
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.necks.fpn import conv3x3

Dtype = Any
NUM_NEIGHBOURS = 8  # Square (8-) connectivity.


class ConnectivityHead(nn.Module):
  """[B, h, w, C] -> float32 [B, h, w, 8] connectivity logits."""
  features: int = 256  # Width of the 3x3 convs.
  num_convs: int = 1
  num_outputs: int = NUM_NEIGHBOURS
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_convs):
      x = nn.relu(conv3x3(self.features, f"conv{i}", self.dtype)(x))
    logits = nn.Conv(self.num_outputs, (1, 1), dtype=self.dtype, name="logits")(x)
    return logits.astype(jnp.float32)
