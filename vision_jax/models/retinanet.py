"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017):
any backbone of the model table + FPN + RetinaNet head, laid out as
mmdetection 2.13's `retinanet_{r50,pvt_*}_fpn_1x_coco` (Wang et al.,
"Pyramid Vision Transformer", ICCV 2021, Sec. 5.1 and Table 3).

The backbone is built with `features_only=True` and declares its levels
(`vision_jax.models.features`); the FPN takes those of strides `in_strides`
(C3-C5) and adds P6 (from C5 itself) and P7. Outputs are flattened per level
in (level, y, x, anchor) order, the order of the detection task's anchors:
"cls" [B, N, C] logits and "reg" [B, N, 4] deltas. Parameter counts with 80
classes: PVT-Tiny/Small/Medium/Large 22,964,724 / 34,221,300 / 53,943,540 /
71,104,756; ResNet-50 37,968,692, of which 37,743,348 train with mmdet's
frozen stem and first stage (the 37.7M of the PVT paper's Table 3, which
counts trainable parameters).

`neck="dense_fpn_scp"` is CATNet (Liu et al., "Learning to Aggregate
Multi-Scale Context for Instance Segmentation in Remote Sensing Images",
IEEE TNNLS 2024; official `catnet_r50_fpn.py`): the FPN replaced by DenseFPN
(laterals on C3-C5, P6/P7 by stride-2 convs on the P5 lateral, 5 dense
stacks) followed by SCP; `catnet` below is that detector on ResNet-50
(in a config: model.name="retinanet", backbone="resnet50",
neck="dense_fpn_scp"; DIOR has num_classes=20). With 80 classes it has
25,557,032 - 2,049,000 + 12,800,530 + 660,490 + 6,463,220 = 43,432,272
parameters (backbone + DenseFPN + SCP + head).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.heads.retina_head import RetinaHead
from vision_jax.models.necks.dense_fpn import DenseFPN
from vision_jax.models.necks.fpn import FPN
from vision_jax.models.necks.scp import SCP

Dtype = Any
NECKS = ("fpn", "dense_fpn_scp")  # FPN; CATNet's DenseFPN followed by SCP.


class RetinaNet(features_lib.WithBackbone, nn.Module):
  """Backbone + neck (FPN, or CATNet's DenseFPN + SCP) + RetinaNet head.

  `__call__(images, train=...)` -> ({"cls": [B, N, C], "reg": [B, N, 4]}, aux)
  with aux["levels"] the (h, w) of P3..P7 and aux["fpn"] the pyramid maps
  (the neck's output, whichever neck).
  """
  backbone: str = "pvt_tiny"  # A model name with `features_only`.
  backbone_args: dict | None = None  # Its constructor arguments.
  num_classes: int = 80
  num_anchors: int = 9  # scales_per_octave x len(ratios) of the task's anchors.
  neck: str = "fpn"  # One of NECKS: "fpn" (submodule fpn) or "dense_fpn_scp" (dense_fpn, scp).
  in_strides: Sequence[int] = (8, 16, 32)  # Backbone levels the neck reads (C3-C5).
  num_levels: int = 5  # Pyramid levels P3..P7.
  fpn_features: int = 256
  head_features: int = 256
  head_convs: int = 4
  prior_prob: float = 0.01
  # Normal init of the head convs; mmdet's 0.01 suits 256 channels. The tower's
  # signal scales by std * sqrt(9 * features) per conv, so a narrower head
  # keeps mmdet's propagation with 0.01 * sqrt(256 / head_features).
  head_init_std: float = 0.01
  dtype: Dtype = jnp.float32

  def _necks(self, bound: bool) -> list[nn.Module]:
    """The neck's modules in order: as submodules (bound) or, for declarations, unbound."""
    where = (lambda name: {"name": name}) if bound else (lambda name: {"parent": None})
    args = (self.fpn_features, tuple(self.in_strides), self.num_levels)
    if self.neck == "fpn":
      return [FPN(*args, self.dtype, **where("fpn"))]
    if self.neck == "dense_fpn_scp":
      return [DenseFPN(*args, dtype=self.dtype, **where("dense_fpn")),
              SCP(self.fpn_features, self.num_levels, dtype=self.dtype, **where("scp"))]
    raise ValueError(f"RetinaNet neck {self.neck!r} is not one of {NECKS}.")


  def feature_levels(self) -> dict[str, features_lib.Level]:
    """The pyramid P3..P7 the head runs on (no compute); fails naming the
    backbone's levels when it lacks one of `in_strides`."""
    levels = self.backbone_levels()
    for neck in self._necks(bound=False):
      levels = neck.feature_levels(levels)
    return levels

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    backbone = self.part("backbone", name="backbone")
    features, _ = backbone(jnp.asarray(images, self.dtype), train=train)
    pyramid = features
    for neck in self._necks(bound=True):  # FPN has no norm; DenseFPN's BatchNorm needs `train`.
      pyramid = neck(pyramid) if isinstance(neck, FPN) else neck(pyramid, train=train)
    pyramid = list(pyramid.values())
    head = RetinaHead(self.num_classes, self.num_anchors, self.head_features, self.head_convs,
                      self.prior_prob, self.head_init_std, self.dtype, name="head")
    cls, reg = zip(*(head(p) for p in pyramid))
    outputs = {"cls": jnp.concatenate(cls, 1).astype(jnp.float32),
               "reg": jnp.concatenate(reg, 1).astype(jnp.float32)}
    aux = {"levels": tuple(tuple(p.shape[1:3]) for p in pyramid), "fpn": pyramid}
    return outputs, aux


# CATNet (official catnet_r50_fpn.py): ResNet-50 (BatchNorm training, as its
# norm_eval=False) + DenseFPN + SCP + RetinaNet head, P3-P7.
catnet = functools.partial(RetinaNet, backbone="resnet50", neck="dense_fpn_scp")
