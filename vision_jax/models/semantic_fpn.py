"""Semantic FPN (Kirillov et al., "Panoptic Feature Pyramid Networks", CVPR
2019) on any backbone of the model table, laid out as mmsegmentation's
`EncoderDecoder` with an `FPN` neck and an `FPNHead` for the PVT paper's
ADE20K results (Wang et al., ICCV 2021, Sec. 5.3, Table 5;
configs/sem_fpn/PVT/fpn_pvt_*_ade20k_40k.py of the official code).

The backbone is built with `features_only` and declares its levels; the FPN
(`necks/fpn.py`: 1x1 laterals, nearest top-down, 3x3 outputs, no extra
levels) reads those of strides `in_strides` (C2-C5) at `fpn_features`
channels, the head (`heads/fpn_head.py`) sums them at stride 4. Parameter
counts with 150 classes: PVT-Tiny/Small/Medium/Large 16,981,398 /
28,237,974 / 47,960,214 / 65,121,430 (neck 2,623,488, head 1,643,158).
"""
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.heads.fpn_head import FPNHead
from vision_jax.models.necks.fpn import FPN

Dtype = Any


class SemanticFPN(features_lib.WithBackbone, nn.Module):
  """Backbone + FPN + FPNHead: `__call__(images, train=...)` ->
  ({"logits": [B, H/4, W/4, num_classes]}, aux) with aux["fpn"] the pyramid."""
  backbone: str = "pvt_tiny"  # A model name with `features_only`.
  backbone_args: dict | None = None  # Its constructor arguments.
  num_classes: int = 150
  in_strides: Sequence[int] = (4, 8, 16, 32)
  fpn_features: int = 256
  head_channels: int = 128
  dropout: float = 0.1
  align_corners: bool = False
  dtype: Dtype = jnp.float32

  def _fpn(self, **where) -> FPN:
    return FPN(self.fpn_features, tuple(self.in_strides), len(self.in_strides), self.dtype,
               **where)


  def feature_levels(self) -> dict[str, features_lib.Level]:
    """The pyramid the head reads (no compute); fails naming the backbone's
    levels when it lacks one of `in_strides`."""
    return self._fpn(parent=None).feature_levels(self.part("backbone").feature_levels())

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    features, _ = self.part("backbone", name="backbone")(jnp.asarray(images, self.dtype),
                                                         train=train)
    pyramid = list(self._fpn(name="fpn")(features).values())
    logits = FPNHead(self.num_classes, tuple(self.in_strides), self.head_channels, self.dropout,
                     self.align_corners, self.dtype, name="head")(pyramid, train=train)
    return {"logits": logits.astype(jnp.float32)}, {"fpn": pyramid}
