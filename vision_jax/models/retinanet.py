"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017)
on a pyramid backbone, laid out as mmdetection 2.13's `retinanet_pvt_*_fpn_1x`
(Wang et al., "Pyramid Vision Transformer", ICCV 2021, Sec. 5.1).

FPN (Lin et al., CVPR 2017): 1x1 laterals on backbone levels 2..4 (strides
8/16/32), top-down nearest upsampling and sums, a 3x3 output conv per level,
P6 = 3x3 stride-2 conv on C5 (`add_extra_convs='on_input'`), P7 = 3x3 stride-2
conv on P6 with no ReLU before it; Xavier-uniform init. Head: shared across
levels, two towers of `num_convs` (3x3 conv + ReLU), a classifier 3x3 conv to
A*C logits whose bias is -log((1 - pi) / pi) (Eq. 5's prior, pi = 0.01) and a
regressor 3x3 conv to A*4 deltas; Normal(0, 0.01) init (`head_init_std`).

Outputs are flattened per level in (level, y, x, anchor) order, the order of
`vision_jax.ops.anchors`: "cls" [B, N, C] logits and "reg" [B, N, 4] deltas.
With a PVT-Tiny/Small/Medium/Large backbone and 80 classes the parameter
counts are 22,964,724 / 34,221,300 / 53,943,540 / 71,104,756 (mmdet).
"""
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any
xavier = nn.initializers.xavier_uniform()


def upsample_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """PyTorch `interpolate(mode='nearest', size=...)`: source index floor(i * in / out)."""
  (h, w), (out_h, out_w) = x.shape[1:3], size
  rows = (jnp.arange(out_h) * h) // out_h
  cols = (jnp.arange(out_w) * w) // out_w
  return x[:, rows][:, :, cols]


def _conv3x3(features: int, name: str, dtype: Dtype, strides: int = 1, kernel_init=xavier,
             bias_init=nn.initializers.zeros) -> nn.Conv:
  return nn.Conv(features, (3, 3), strides, padding=((1, 1), (1, 1)), dtype=dtype,
                 kernel_init=kernel_init, bias_init=bias_init, name=name)


class FPN(nn.Module):
  """Feature pyramid P3..P7 from backbone maps C2..C5 (start level 1)."""
  features: int = 256
  start_level: int = 1  # C2 (stride 4) is not used by RetinaNet.
  num_outs: int = 5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, inputs: Sequence[jax.Array]) -> list[jax.Array]:
    inputs = list(inputs)[self.start_level:]
    laterals = [nn.Conv(self.features, (1, 1), dtype=self.dtype, kernel_init=xavier,
                        name=f"lateral{i}")(x) for i, x in enumerate(inputs)]
    for i in range(len(laterals) - 1, 0, -1):
      laterals[i - 1] = laterals[i - 1] + upsample_nearest(laterals[i], laterals[i - 1].shape[1:3])
    outs = [_conv3x3(self.features, f"output{i}", self.dtype)(x) for i, x in enumerate(laterals)]
    extra = inputs[-1]  # 'on_input': P6 from C5 itself.
    for i in range(len(outs), self.num_outs):
      extra = _conv3x3(self.features, f"extra{i}", self.dtype, strides=2)(extra)
      outs.append(extra)
    return outs


class RetinaHead(nn.Module):
  """Classification and box towers shared over pyramid levels."""
  num_classes: int
  num_anchors: int = 9
  features: int = 256
  num_convs: int = 4
  prior_prob: float = 0.01
  init_std: float = 0.01
  dtype: Dtype = jnp.float32

  def setup(self):
    init = nn.initializers.normal(self.init_std)
    tower = lambda kind: [_conv3x3(self.features, f"{kind}_conv{i}", self.dtype,
                                   kernel_init=init) for i in range(self.num_convs)]
    self.cls_convs, self.reg_convs = tower("cls"), tower("reg")
    bias = -math.log((1 - self.prior_prob) / self.prior_prob)
    self.cls_out = _conv3x3(self.num_anchors * self.num_classes, "cls_out", self.dtype,
                            kernel_init=init, bias_init=nn.initializers.constant(bias))
    self.reg_out = _conv3x3(self.num_anchors * 4, "reg_out", self.dtype, kernel_init=init)

  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    cls, reg = x, x
    for conv in self.cls_convs:
      cls = nn.relu(conv(cls))
    for conv in self.reg_convs:
      reg = nn.relu(conv(reg))
    b = x.shape[0]
    return (self.cls_out(cls).reshape(b, -1, self.num_classes),
            self.reg_out(reg).reshape(b, -1, 4))


class RetinaNet(nn.Module):
  """Backbone (named in the model registry) + FPN + RetinaNet head.

  `__call__(images, train=...)` -> ({"cls": [B, N, C], "reg": [B, N, 4]}, aux)
  with aux["levels"] the (h, w) of P3..P7 and aux["fpn"] the pyramid maps.
  """
  backbone: str = "pvt_tiny"
  backbone_args: dict | None = None  # Extra constructor arguments of the backbone.
  num_classes: int = 80
  num_anchors: int = 9  # scales_per_octave x len(ratios) of the task's anchors.
  fpn_features: int = 256
  head_features: int = 256
  head_convs: int = 4
  prior_prob: float = 0.01
  # Normal init of the head convs; mmdet's 0.01 suits 256 channels. The tower's
  # signal scales by std * sqrt(9 * features) per conv, so a narrower head
  # keeps mmdet's propagation with 0.01 * sqrt(256 / head_features).
  head_init_std: float = 0.01
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array, *, train: bool = False):
    from vision_jax import registry  # Lazy: the registry imports models by name.
    backbone = registry.MODELS.get(self.backbone)(
        features_only=True, dtype=self.dtype, **(self.backbone_args or {}), name="backbone")
    features, _ = backbone(jnp.asarray(images, self.dtype), train=train)
    pyramid = FPN(self.fpn_features, dtype=self.dtype, name="fpn")(features)
    head = RetinaHead(self.num_classes, self.num_anchors, self.head_features, self.head_convs,
                      self.prior_prob, self.head_init_std, self.dtype, name="head")
    cls, reg = zip(*(head(p) for p in pyramid))
    outputs = {"cls": jnp.concatenate(cls, 1).astype(jnp.float32),
               "reg": jnp.concatenate(reg, 1).astype(jnp.float32)}
    aux = {"levels": tuple(tuple(p.shape[1:3]) for p in pyramid), "fpn": pyramid}
    return outputs, aux
