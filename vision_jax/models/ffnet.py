"""FFNet (Mehta et al., "Simple and Efficient Architectures for Semantic
Segmentation", CVPR-W 2022): a plain ResNet backbone
(`vision_jax.models.backbones.ffnet`) + the FFNet up-head and segmentation
head (`vision_jax.models.heads.ffnet_head`).

A variant `ffnet{depth}{family}_{d}{XYZ}{_mobile}{_pre_down}` names
- the backbone: depth and family ("" ResNet, "S" ResNetS, "N"/"NS"
  ResNetNarrow), "d" = its first stage at stride 2 (backbone `..._D`, the
  GPU-small models, output at 1/8 instead of 1/4);
- X the stem (A 7x7 + max-pool, B ResNetS, C Narrow: fixed by the family),
  Y the up-head and Z the segmentation head (Sec. 3, Fig. 3);
- "_mobile": nearest instead of bilinear (align_corners=True) upsampling;
- "_pre_down": a Gaussian 2x pre-downsampling of the input, so the output is
  at 1/8 of the image.
`VARIANTS` lists the paper's released segmentation models (`models/ffnet_*.py`
of the official code); each is a module attribute (`ffnet18_dAAA`, ...) and
`ffnet(name)` builds any name of that form. Parameter counts, 19 classes
[official code @2291ae7]: ffnet18_dAAA 15,181,267; ffnet34_AAA 25,285,203;
ffnet50_AAA 28,553,043; ffnet101_AAA 47,545,171; ffnet40S_BBB_mobile
13,907,059; ffnet78S_BCC_mobile 26,828,435; ffnet122NS_CCC_mobile 32,165,683.
"""
import functools
import re
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.backbones import ffnet as backbones
from vision_jax.models.heads import ffnet_head
from vision_jax.models.ffnet_names import VARIANTS

Dtype = Any


class FFNet(features_lib.WithBackbone, nn.Module):
  """Backbone levels -> FFNet head -> logits.

  `__call__(images [B, H, W, 3], train=...)` -> ({"logits": float32
  [B, H / s, W / s, num_classes]}, aux) with s = `output_stride()` (4 or 8;
  odd sizes round as the convs do); aux holds the backbone levels ("C2", ...),
  the up-branch maps ("up") and the concatenated head features ("features").
  """
  backbone: str = "ffnet_resnet18_D"  # A name of `backbones.ffnet.BACKBONES`.
  backbone_args: dict | None = None  # Its constructor arguments.
  up_head: str = "A"  # Up-head Y: "A", "B" or "C".
  seg_head: str = "A"  # Segmentation head Z: "A", "B" or "C".
  mobile: bool = False  # Nearest upsampling instead of bilinear (align_corners=True).
  pre_down: bool = False  # Gaussian 2x downsampling of the input first.
  num_classes: int = 19
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.


  def output_stride(self) -> int:
    """The logits' stride: the finest backbone level's, x2 with `pre_down`."""
    return min(l.stride for l in self.backbone_levels().values()) * (2 if self.pre_down else 1)

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    x = jnp.asarray(images, self.dtype)
    if self.pre_down:
      x = ffnet_head.smooth_and_downsample(x)
    levels, _ = self.part("backbone", name="backbone")(x, train=train)
    head = ffnet_head.FFNetHead(self.num_classes, self.up_head, self.seg_head,
                                "nearest" if self.mobile else "bilinear", self.dtype, name="head")
    logits, head_aux = head(list(levels.values()), train=train)
    return {"logits": jnp.asarray(logits, jnp.float32)}, {**levels, **head_aux}


_NAME = re.compile(r"ffnet(\d+)(S|N|NS)?_(d?)([ABC])([ABC])([ABC])(_mobile)?(_pre_down)?")
_STEMS = {None: "A", "S": "B", "N": "C", "NS": "C"}  # Backbone family -> stem letter X.


def spec(name: str) -> dict:
  """The FFNet arguments a variant name stands for, e.g. "ffnet40S_BBB_mobile"
  -> backbone "ffnet_resnet40S", up_head "B", seg_head "B", mobile True."""
  match = _NAME.fullmatch(name)
  if not match:
    raise KeyError(f"{name!r} is not an FFNet name ffnet<depth>[S|N|NS]_[d]<XYZ>[_mobile]"
                   f"[_pre_down]; the released ones: {', '.join(VARIANTS)}.")
  depth, family, d, stem, up, seg, mobile, pre_down = match.groups()
  if stem != _STEMS[family]:
    raise KeyError(f"{name!r}: a {family or 'ResNet'} backbone has stem {_STEMS[family]}, "
                   f"not {stem}.")
  backbone = f"ffnet_resnet{depth}{family or ''}{'_D' if d else ''}"
  if backbone not in backbones.BACKBONES:
    raise KeyError(f"{name!r}: no backbone {backbone!r}; known: {', '.join(backbones.BACKBONES)}.")
  return {"backbone": backbone, "up_head": up, "seg_head": seg, "mobile": bool(mobile),
          "pre_down": bool(pre_down)}


def ffnet(name: str, **kwargs) -> FFNet:
  """The FFNet variant `name` (e.g. "ffnet18_dAAA"), other fields from `kwargs`."""
  return FFNet(**{**spec(name), **kwargs})


def __getattr__(name: str):
  """Module attributes `ffnet18_dAAA`, ...: `FFNet` with the fields of each name
  of `VARIANTS`."""
  if name in VARIANTS:
    return functools.partial(FFNet, **spec(name))
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Tensor parallelism over the "model" mesh axis: convs split their output
# channels (HWIO kernels); BatchNorm and biases replicated.
PARTITION_RULES = backbones.PARTITION_RULES
