"""The Semantic FPN head (Kirillov et al., "Panoptic Feature Pyramid
Networks", CVPR 2019, Sec. 3 and Fig. 3) as mmsegmentation's `FPNHead`.

Per pyramid level of stride s: max(1, log2(s / 4)) stages of 3x3 conv
(no bias) + BatchNorm + ReLU to `channels`, each but the stride-4 level's
followed by a x2 bilinear upsampling; the levels are summed at stride 4
(bilinear to the first level's size), then Dropout2d and a 1x1 conv to the
class logits. Init as mmseg: convs Kaiming normal (fan_out, ReLU), the
classifier Normal(0, 0.01), BatchNorm with PyTorch's momentum 0.1 / eps 1e-5.
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.layers import interpolate

Dtype = Any
kaiming = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


class FPNHead(nn.Module):
  """Pyramid maps (strides `strides`, finest first) -> logits [B, H/4, W/4, C]."""
  num_classes: int
  strides: Sequence[int] = (4, 8, 16, 32)
  channels: int = 128
  dropout: float = 0.1
  align_corners: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, pyramid: Sequence[jax.Array], *, train: bool = False) -> jax.Array:
    if len(pyramid) != len(self.strides):
      raise ValueError(f"FPNHead has strides {tuple(self.strides)}; got {len(pyramid)} maps.")
    output = None
    for i, (x, stride) in enumerate(zip(pyramid, self.strides)):
      stages = max(1, int(math.log2(stride) - math.log2(self.strides[0])))
      for k in range(stages):
        x = nn.Conv(self.channels, (3, 3), padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=kaiming, dtype=self.dtype, name=f"scale{i}_conv{k}")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, name=f"scale{i}_norm{k}")(x)
        x = nn.relu(x)
        if stride != self.strides[0]:
          x = interpolate.resize_bilinear(x, (2 * x.shape[1], 2 * x.shape[2]),
                                          self.align_corners)
      if output is None:
        output = x
      else:
        output = output + interpolate.resize_bilinear(x, output.shape[1:3], self.align_corners)
    output = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(output)
    return nn.Conv(self.num_classes, (1, 1), kernel_init=nn.initializers.normal(0.01),
                   dtype=self.dtype, name="classifier")(output)
