"""The RetinaNet head (Lin et al., "Focal Loss for Dense Object Detection",
ICCV 2017, Sec. 4), shared across pyramid levels as mmdetection's
`RetinaHead`: two towers of `num_convs` (3x3 conv + ReLU), a classifier 3x3
conv to A*C logits whose bias is -log((1 - pi) / pi) (Eq. 5's prior, pi =
0.01) and a regressor 3x3 conv to A*4 deltas; Normal(0, `init_std`) init.
"""
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.models.necks.fpn import conv3x3

Dtype = Any


class RetinaHead(nn.Module):
  """One level [B, H, W, C] -> (logits [B, H*W*A, classes], deltas [B, H*W*A, 4])
  in (y, x, anchor) order."""
  num_classes: int
  num_anchors: int = 9
  features: int = 256
  num_convs: int = 4
  prior_prob: float = 0.01
  init_std: float = 0.01
  dtype: Dtype = jnp.float32

  def setup(self):
    init = nn.initializers.normal(self.init_std)
    tower = lambda kind: [conv3x3(self.features, f"{kind}_conv{i}", self.dtype,
                                  kernel_init=init) for i in range(self.num_convs)]
    self.cls_convs, self.reg_convs = tower("cls"), tower("reg")
    bias = -math.log((1 - self.prior_prob) / self.prior_prob)
    self.cls_out = conv3x3(self.num_anchors * self.num_classes, "cls_out", self.dtype,
                           kernel_init=init, bias_init=nn.initializers.constant(bias))
    self.reg_out = conv3x3(self.num_anchors * 4, "reg_out", self.dtype, kernel_init=init)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    cls, reg = x, x
    for conv in self.cls_convs:
      cls = nn.relu(conv(cls))
    for conv in self.reg_convs:
      reg = nn.relu(conv(reg))
    b = x.shape[0]
    return (self.cls_out(cls).reshape(b, -1, self.num_classes),
            self.reg_out(reg).reshape(b, -1, 4))
