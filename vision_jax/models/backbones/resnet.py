"""ResNet (He et al., 2016, arXiv:1512.03385) and ResNet-D (He et al., 2019,
"Bag of Tricks", arXiv:1812.01187, Sec. 4.1).

Layout follows torchvision's v1.5 (stride on the 3x3 of the bottleneck) with
PyTorch's explicit paddings, so reference weights map one to one. ResNet-D
swaps the 7x7 stem for three 3x3 convs (width/2, width/2, width) and
downsamples shortcuts with a 2x2 average pool before a stride-1 1x1 conv.
Exact parameter counts (timm, 1000 classes): resnet18 11,689,512;
resnet50 25,557,032; resnet18d 11,708,744; resnet50d 25,576,264.

With `features_only` the stages' outputs are the levels C2-C5 (strides 4-32;
C0-C3 with `small_input`), as detectron2's res2-res5 and mmdetection's
out_indices (0, 1, 2, 3); `norm_eval` keeps every BatchNorm on its running
statistics in training too (mmdetection's norm_eval=True for detection).
Reference weights: `resnet_weights.py` (torchvision and timm layouts).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib

Dtype = Any
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision.


def _conv(dtype: Dtype):
  """Bias-free conv as in every ResNet layer."""
  return functools.partial(nn.Conv, use_bias=False, dtype=dtype, kernel_init=conv_init)


def _norm(train: bool, dtype: Dtype):
  """BatchNorm with PyTorch's defaults (momentum 0.1 there = 0.9 here, eps 1e-5)."""
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype)


class BasicBlock(nn.Module):
  """Two 3x3 convs; ResNet-18/34."""
  features: int
  strides: int = 1
  avg_down: bool = False  # ResNet-D shortcut.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv, norm = _conv(self.dtype), _norm(train, self.dtype)
    y = conv(self.features, (3, 3), self.strides, padding=((1, 1), (1, 1)), name="conv1")(x)
    y = nn.relu(norm(name="bn1")(y))
    y = conv(self.features, (3, 3), padding=((1, 1), (1, 1)), name="conv2")(y)
    y = norm(name="bn2", scale_init=nn.initializers.zeros)(y)
    return nn.relu(y + Shortcut(self.features, self.strides, self.avg_down, self.dtype,
                                name="shortcut")(x, train=train))


class Bottleneck(nn.Module):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1 x4; ResNet-50/101."""
  features: int
  strides: int = 1
  avg_down: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv, norm = _conv(self.dtype), _norm(train, self.dtype)
    y = nn.relu(norm(name="bn1")(conv(self.features, (1, 1), name="conv1")(x)))
    y = conv(self.features, (3, 3), self.strides, padding=((1, 1), (1, 1)), name="conv2")(y)
    y = nn.relu(norm(name="bn2")(y))
    y = conv(self.features * 4, (1, 1), name="conv3")(y)
    y = norm(name="bn3", scale_init=nn.initializers.zeros)(y)
    return nn.relu(y + Shortcut(self.features * 4, self.strides, self.avg_down, self.dtype,
                                name="shortcut")(x, train=train))


class Shortcut(nn.Module):
  """Identity, or projection (1x1 strided conv; ResNet-D: avg-pool then 1x1)."""
  features: int
  strides: int
  avg_down: bool
  dtype: Dtype

  @nn.compact
  def __call__(self, x, *, train: bool):
    if x.shape[-1] == self.features and self.strides == 1:
      return x
    strides = self.strides
    if self.avg_down and strides > 1:
      x = nn.avg_pool(x, (strides, strides), (strides, strides), padding="SAME",
                      count_include_pad=False)
      strides = 1
    x = _conv(self.dtype)(self.features, (1, 1), strides, name="conv")(x)
    return _norm(train, self.dtype)(name="bn")(x)


class ResNet(nn.Module):
  """ResNet classifier; `__call__(images, train=...)` -> (logits, aux)."""
  stage_sizes: Sequence[int]  # Blocks per stage.
  block: str = "basic"  # "basic" or "bottleneck".
  num_classes: int = 1000  # 0: no head; the output is the pooled features.
  width: int = 64  # Channels of the stem and first stage.
  deep_stem: bool = False  # ResNet-D: three 3x3 stem convs.
  avg_down: bool = False  # ResNet-D: avg-pool downsampling in shortcuts.
  small_input: bool = False  # 3x3 stride-1 stem, no max-pool (CIFAR-size images).
  features_only: bool = False  # Backbone: the stage maps as named levels, no pooling or head.
  norm_eval: bool = False  # BatchNorm on running statistics also in training.
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C2": Level(4, 64 * expansion), ..., "C5": Level(32, 512 * expansion)}."""
    expansion = 4 if self.block == "bottleneck" else 1
    first = 1 if self.small_input else 4
    levels = [features_lib.Level(first * 2**i, self.width * 2**i * expansion)
              for i in range(len(self.stage_sizes))]
    return {features_lib.level_name(level.stride): level for level in levels}

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    aux = {}
    train_norm = train and not self.norm_eval
    x = jnp.asarray(x, self.dtype)
    conv, norm = _conv(self.dtype), _norm(train_norm, self.dtype)
    if self.small_input:
      x = nn.relu(norm(name="stem_bn")(conv(self.width, (3, 3), padding=((1, 1), (1, 1)),
                                            name="stem_conv")(x)))
    else:
      if self.deep_stem:
        for i, (feat, stride) in enumerate(((self.width // 2, 2), (self.width // 2, 1),
                                            (self.width, 1))):
          x = conv(feat, (3, 3), stride, padding=((1, 1), (1, 1)), name=f"stem_conv{i}")(x)
          x = nn.relu(norm(name=f"stem_bn{i}")(x))
      else:
        x = conv(self.width, (7, 7), 2, padding=((3, 3), (3, 3)), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    aux["stem"] = x
    block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        x = block_cls(self.width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                      avg_down=self.avg_down, dtype=self.dtype,
                      name=f"stage{i + 1}_block{j + 1}")(x, train=train_norm)
      aux[f"stage{i + 1}"] = x
    if self.features_only:
      return dict(zip(self.feature_levels(), (aux[f"stage{i + 1}"] for i in range(
          len(self.stage_sizes))))), aux
    x = jnp.mean(x, axis=(1, 2))
    aux["pre_logits"] = x
    if self.num_classes == 0:
      return x, aux
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


# Tensor parallelism over the "model" mesh axis: every conv and the head split their
# output channels (HWIO / [in, out] kernels); BatchNorm and biases replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)

resnet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
resnet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
resnet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")
resnet101 = functools.partial(ResNet, stage_sizes=(3, 4, 23, 3), block="bottleneck")
resnet18d = functools.partial(resnet18, deep_stem=True, avg_down=True)
resnet50d = functools.partial(resnet50, deep_stem=True, avg_down=True)
