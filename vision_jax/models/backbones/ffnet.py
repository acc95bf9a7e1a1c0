"""FFNet backbones (Mehta et al., "Simple and Efficient Architectures for
Semantic Segmentation", CVPR-W 2022, Sec. 3 and Fig. 2): plain ResNets that
hand four feature maps to the FFNet up-head (`vision_jax.models.heads.ffnet_head`).

Three families, each a stem and stages of torchvision-style residual blocks
(a 1x1 conv + BN projection shortcut where channels or stride change):
- `ResNet` ("A" stem): 7x7 s2 conv + BN + ReLU + 3x3 s2 max-pool; four stages
  of widths 64-512 (x4 with Bottleneck); stage strides 1, 2, 2, 2, or 2, 2, 2, 2
  for the "_D" backbones of the GPU-small models (levels C3-C6, so the model's
  output is at 1/8).
- `ResNetS` ("B" stem, "S" = slim): 3x3 s2 (3->32) and 3x3 s2 (32->64) conv +
  BN + ReLU, no pool; widths 64, 128, 192, 320.
- `ResNetNarrow` ("C" stem, "N"/"NS", three stages): 3x3 s2 (3->64), 3x3 s2
  (64->64) and 3x3 s1 (64->w0) conv + BN + ReLU give the stride-4 level; then
  three stride-2 stages; widths 64, 96, 160, 320 (N) or 64, 64, 128, 256 (NS).

Layer names follow the official code's state dict (conv1/bn1, layer1_0/conv1,
layer1_0/downsample_conv, ...). Initialisation is the official one (conv
kernels N(0, 0.01), biases 1e-4, BatchNorm 1/0; momentum 0.1 there = 0.9 here,
eps 1e-5). Parameter counts [official code @2291ae7]: ffnet_resnet18_D
11,180,736; ffnet_resnet34 21,284,672; ffnet_resnet50 23,508,032;
ffnet_resnet40S 12,698,912; ffnet_resnet122NS 31,640,512.

Backbones are named `ffnet_resnet{depth}{family}{_D}` (`BACKBONES`); each is a
module attribute, e.g. `ffnet_resnet18_D`, `ffnet_resnet40S`, `ffnet_resnet122NS`.
They always return the levels (`features_only`): the paper's ImageNet
classifiers put FFNet's own classification head on top of these maps.
"""
import functools
import re
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.ffnet_names import (
    BACKBONES, NARROW_DEPTHS, NARROW_WIDTHS, RESNET_DEPTHS, RESNET_S_DEPTHS)

Dtype = Any
conv_init = nn.initializers.normal(0.01)  # Official `model_weight_initializer`.
bias_init = nn.initializers.constant(1e-4)


def conv(features: int, kernel: int, strides: int = 1, *, name: str, dtype: Dtype,
         use_bias: bool = False) -> nn.Conv:
  """k x k conv with PyTorch's padding k // 2, official init; bias-free by default."""
  pad = ((kernel // 2, kernel // 2),) * 2
  return nn.Conv(features, (kernel, kernel), strides, padding=pad, use_bias=use_bias,
                 dtype=dtype, kernel_init=conv_init, bias_init=bias_init, name=name)


def norm(train: bool, *, name: str, dtype: Dtype) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.1 there = 0.9 here, eps 1e-5)."""
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=dtype,
                      name=name)


class ConvBNReLU(nn.Module):
  """k x k conv (no bias) + BatchNorm + ReLU (the official `ConvBNReLU`)."""
  features: int
  kernel: int = 3
  strides: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = conv(self.features, self.kernel, self.strides, name="conv", dtype=self.dtype)(x)
    return nn.relu(norm(train, name="bn", dtype=self.dtype)(x))


class BasicBlock(nn.Module):
  """Two 3x3 conv + BN, ReLU after the first and after the residual sum."""
  features: int
  strides: int = 1
  dtype: Dtype = jnp.float32
  expansion = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    d = self.dtype
    y = nn.relu(norm(train, name="bn1", dtype=d)(
        conv(self.features, 3, self.strides, name="conv1", dtype=d)(x)))
    y = norm(train, name="bn2", dtype=d)(conv(self.features, 3, name="conv2", dtype=d)(y))
    return nn.relu(y + _shortcut(self, x, self.features, train))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided) -> 1x1 (x4) conv + BN; ResNet-50/101."""
  features: int
  strides: int = 1
  dtype: Dtype = jnp.float32
  expansion = 4

  @nn.compact
  def __call__(self, x, *, train: bool):
    d, out = self.dtype, self.features * self.expansion
    y = nn.relu(norm(train, name="bn1", dtype=d)(conv(self.features, 1, name="conv1", dtype=d)(x)))
    y = nn.relu(norm(train, name="bn2", dtype=d)(
        conv(self.features, 3, self.strides, name="conv2", dtype=d)(y)))
    y = norm(train, name="bn3", dtype=d)(conv(out, 1, name="conv3", dtype=d)(y))
    return nn.relu(y + _shortcut(self, x, out, train))


def _shortcut(block: nn.Module, x, features: int, train: bool):
  """Identity, or a strided 1x1 conv + BN where channels or stride change."""
  if x.shape[-1] == features and block.strides == 1:
    return x
  x = conv(features, 1, block.strides, name="downsample_conv", dtype=block.dtype)(x)
  return norm(train, name="downsample_bn", dtype=block.dtype)(x)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class _Backbone(nn.Module):
  """Stem + residual stages -> four levels in order of increasing stride."""
  depths: Sequence[int]  # Blocks per stage.
  strides: Sequence[int]  # Stride of each stage's first block.
  widths: Sequence[int]  # Channels of the four levels (before block expansion).
  block: str = "basic"  # "basic" or "bottleneck".
  features_only: bool = True  # The levels are the output (the backbone contract).
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  stem_levels = 0  # Levels the stem itself produces (ResNetNarrow: the stride-4 map).

  def _stem(self, x, train: bool):
    raise NotImplementedError

  def _level_widths(self) -> list[int]:
    expansion = BLOCKS[self.block].expansion
    return [w * (1 if i < self.stem_levels else expansion) for i, w in enumerate(self.widths)]

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C2": Level(4, 64), ...}; "_D" backbones C3-C6 (strides 8-64)."""
    if len(self.depths) + self.stem_levels != 4 or len(self.strides) != len(self.depths):
      raise ValueError(f"{type(self).__name__} makes four levels: got depths {self.depths}, "
                       f"strides {self.strides}.")
    strides, stride = [4] * self.stem_levels, 4
    for s in self.strides:
      stride *= s
      strides.append(stride)
    return {features_lib.level_name(s): features_lib.Level(s, c)
            for s, c in zip(strides, self._level_widths())}

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    if not self.features_only:
      raise ValueError("FFNet backbones return feature levels only (features_only=True): "
                       "the paper's classifiers put FFNet's own head on these maps.")
    names = list(self.feature_levels())
    x = jnp.asarray(x, self.dtype)
    x = self._stem(x, train)
    aux = {"stem": x}
    maps = [x] * self.stem_levels
    block_cls = BLOCKS[self.block]
    for i, (depth, stride) in enumerate(zip(self.depths, self.strides)):
      width = self.widths[self.stem_levels + i]
      for j in range(depth):
        x = block_cls(width, stride if j == 0 else 1, self.dtype,
                      name=f"layer{i + 1}_{j}")(x, train=train)
      maps.append(x)
      aux[f"layer{i + 1}"] = x
    return dict(zip(names, maps)), aux


class ResNet(_Backbone):
  """Family "A": 7x7 s2 conv + BN + ReLU + 3x3 s2 max-pool, four stages."""
  widths: Sequence[int] = (64, 128, 256, 512)

  def _stem(self, x, train: bool):
    x = conv(64, 7, 2, name="conv1", dtype=self.dtype)(x)
    x = nn.relu(norm(train, name="bn1", dtype=self.dtype)(x))
    return nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))


class ResNetS(_Backbone):
  """Family "S" (stem "B"): two 3x3 s2 conv + BN + ReLU (3->32->64), four stages."""
  widths: Sequence[int] = (64, 128, 192, 320)

  def _stem(self, x, train: bool):
    for i, features in enumerate((32, 64)):
      x = conv(features, 3, 2, name=f"conv{i}", dtype=self.dtype)(x)
      x = nn.relu(norm(train, name=f"bn{i}", dtype=self.dtype)(x))
    return x


class ResNetNarrow(_Backbone):
  """Families "N"/"NS" (stem "C"): three 3x3 conv + BN + ReLU (s2, s2, s1) make
  the stride-4 level; three stride-2 stages make the others."""
  strides: Sequence[int] = (2, 2, 2)
  widths: Sequence[int] = (64, 96, 160, 320)
  stem_levels = 1

  def _stem(self, x, train: bool):
    for i, (features, stride) in enumerate(((64, 2), (64, 2), (self.widths[0], 1))):
      x = conv(features, 3, stride, name=f"conv{i}", dtype=self.dtype)(x)
      x = nn.relu(norm(train, name=f"bn{i}", dtype=self.dtype)(x))
    return x


# Depth name -> (block, blocks per stage) [official models/resnet.py].
def backbone(which: str, **kwargs) -> nn.Module:
  """The backbone `which` of `BACKBONES` (e.g. "ffnet_resnet18_D"), built with `kwargs`."""
  return _constructor(which)(**kwargs)


def _constructor(name: str):
  match = re.fullmatch(r"ffnet_resnet(\d+)(S|N|NS)?(_D)?", name)
  if name not in BACKBONES or not match:
    raise KeyError(f"Unknown FFNet backbone {name!r}; known: {', '.join(BACKBONES)}.")
  depth, family, d = match.groups()
  strides = (2, 2, 2, 2) if d else (1, 2, 2, 2)
  if family is None:
    block, depths = RESNET_DEPTHS[depth]
    return functools.partial(ResNet, depths=depths, strides=strides, block=block)
  if family == "S":
    return functools.partial(ResNetS, depths=RESNET_S_DEPTHS[depth + "S"], strides=strides)
  return functools.partial(ResNetNarrow, depths=NARROW_DEPTHS[depth],
                           widths=NARROW_WIDTHS[family])


def __getattr__(name: str):
  """Module attributes `ffnet_resnet18_D`, ... (one per name of `BACKBONES`)."""
  if name in BACKBONES:
    return _constructor(name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Tensor parallelism over the "model" mesh axis: convs split their output
# channels (HWIO kernels); BatchNorm and biases replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)
