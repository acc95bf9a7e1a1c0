"""Feature Pyramid Network (Lin et al., "Feature Pyramid Networks for Object
Detection", CVPR 2017) as mmdetection 2.x's `FPN` with
`add_extra_convs='on_input'`, the RetinaNet neck.

1x1 laterals on the chosen backbone levels, top-down nearest upsampling and
sums, a 3x3 output conv per level; extra levels (P6, P7) by 3x3 stride-2
convs, the first on the last backbone input itself, the next on the previous
extra level with no ReLU before it; Xavier-uniform init.
"""
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models import features as features_lib

Dtype = Any
xavier = nn.initializers.xavier_uniform()


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """PyTorch `interpolate(mode='nearest', size=...)`: source index floor(i * in / out)."""
  (h, w), (out_h, out_w) = x.shape[1:3], size
  rows = (jnp.arange(out_h) * h) // out_h
  cols = (jnp.arange(out_w) * w) // out_w
  return x[:, rows][:, :, cols]


def conv3x3(features: int, name: str, dtype: Dtype, strides: int = 1, kernel_init=xavier,
            bias_init=nn.initializers.zeros) -> nn.Conv:
  """3x3 conv with PyTorch's padding 1."""
  return nn.Conv(features, (3, 3), strides, padding=((1, 1), (1, 1)), dtype=dtype,
                 kernel_init=kernel_init, bias_init=bias_init, name=name)


class FPN(nn.Module):
  """Pyramid P_k.. from backbone levels of strides `in_strides` (RetinaNet:
  C3-C5, mmdet's start_level 1) plus extra levels up to `num_outs` maps."""
  features: int = 256
  in_strides: Sequence[int] = (8, 16, 32)
  num_outs: int = 5
  dtype: Dtype = jnp.float32

  def feature_levels(self, inputs: Mapping[str, features_lib.Level] | None = None
                     ) -> dict[str, features_lib.Level]:
    """{"P3": Level(8, features), ...}: the pyramid this neck returns."""
    if inputs is not None:
      features_lib.select(inputs, self.in_strides, "FPN")
    strides = [self.in_strides[0] * 2**i for i in range(self.num_outs)]
    return {features_lib.level_name(s, "P"): features_lib.Level(s, self.features) for s in strides}

  @nn.compact
  def __call__(self, levels: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    wanted = [features_lib.level_name(s) for s in self.in_strides]
    missing = [n for n in wanted if n not in levels]
    if missing:
      raise ValueError(f"FPN needs backbone levels {wanted}; got {list(levels)}.")
    inputs = [levels[n] for n in wanted]
    laterals = [nn.Conv(self.features, (1, 1), dtype=self.dtype, kernel_init=xavier,
                        name=f"lateral{i}")(x) for i, x in enumerate(inputs)]
    for i in range(len(laterals) - 1, 0, -1):
      laterals[i - 1] = laterals[i - 1] + upsample_nearest(laterals[i], laterals[i - 1].shape[1:3])
    outs = [conv3x3(self.features, f"output{i}", self.dtype)(x) for i, x in enumerate(laterals)]
    extra = inputs[-1]  # 'on_input': P6 from C5 itself.
    for i in range(len(outs), self.num_outs):
      extra = conv3x3(self.features, f"extra{i}", self.dtype, strides=2)(extra)
      outs.append(extra)
    return dict(zip(self.feature_levels(), outs))
