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

`sparse_ift` swaps every block conv (+ its norm) for a Sparse-IFT family at
`sparse_ift_sparsity` (`vision_jax.layers.sparse_ift`; "wide" widens the
network instead), as the official code does for its ResNets; the stem,
shortcuts and head stay dense layers.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.layers import sparse_ift
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


class _Block(nn.Module):
  """A residual block's conv + norm pairs, dense or one Sparse-IFT family."""
  features: int
  strides: int = 1
  avg_down: bool = False  # ResNet-D shortcut.
  dtype: Dtype = jnp.float32
  sparse_ift: str = "dense"
  sparse_ift_sparsity: float = 0.0

  def conv_norm(self, x, features: int, kernel: int, strides: int, index: int, train: bool,
                last: bool = False):
    """norm{index}(conv{index}(x)); the last norm of a block starts at zero scale."""
    conv, norm = _conv(self.dtype), _norm(train, self.dtype)
    padding = ((kernel // 2, kernel // 2),) * 2
    norm_args = {"scale_init": nn.initializers.zeros} if last else {}
    if self.sparse_ift in ("dense", "wide"):
      y = conv(features, (kernel, kernel), strides, padding=padding, name=f"conv{index}")(x)
      return norm(name=f"bn{index}", **norm_args)(y)
    return sparse_ift.IsoFlopConvNorm(features, (kernel, kernel), strides, padding,
                                      self.sparse_ift, self.sparse_ift_sparsity, conv, norm,
                                      norm_args, name=f"conv{index}")(x)

  def shortcut(self, x, features: int, train: bool):
    return Shortcut(features, self.strides, self.avg_down, self.dtype, name="shortcut")(
        x, train=train)


class BasicBlock(_Block):
  """Two 3x3 convs; ResNet-18/34."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.relu(self.conv_norm(x, self.features, 3, self.strides, 1, train))
    y = self.conv_norm(y, self.features, 3, 1, 2, train, last=True)
    return nn.relu(y + self.shortcut(x, self.features, train))


class Bottleneck(_Block):
  """1x1 -> 3x3 (strided, v1.5) -> 1x1 x4; ResNet-50/101."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    y = nn.relu(self.conv_norm(x, self.features, 1, 1, 1, train))
    y = nn.relu(self.conv_norm(y, self.features, 3, self.strides, 2, train))
    y = self.conv_norm(y, self.features * 4, 1, 1, 3, train, last=True)
    return nn.relu(y + self.shortcut(x, self.features * 4, train))


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
  sparse_ift: str = "dense"  # A Sparse-IFT family of `layers.sparse_ift.FAMILIES`.
  sparse_ift_sparsity: float = 0.0  # The sparsity s the family is iso-FLOP at.

  @property
  def base_width(self) -> int:
    """`width`, widened by Sparse Wide."""
    if self.sparse_ift not in sparse_ift.FAMILIES:
      raise ValueError(f"sparse_ift must be one of {sparse_ift.FAMILIES}, got "
                       f"{self.sparse_ift!r}.")
    if self.sparse_ift != "dense" and not 0.0 < self.sparse_ift_sparsity < 1.0:
      raise ValueError(f"sparse_ift={self.sparse_ift!r} needs sparse_ift_sparsity in (0, 1), "
                       f"got {self.sparse_ift_sparsity}.")
    if self.sparse_ift == "wide":
      return sparse_ift.wide_width(self.width, self.sparse_ift_sparsity)
    return self.width

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C2": Level(4, 64 * expansion), ..., "C5": Level(32, 512 * expansion)}."""
    expansion = 4 if self.block == "bottleneck" else 1
    first = 1 if self.small_input else 4
    levels = [features_lib.Level(first * 2**i, self.base_width * 2**i * expansion)
              for i in range(len(self.stage_sizes))]
    return {features_lib.level_name(level.stride): level for level in levels}

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    aux = {}
    train_norm = train and not self.norm_eval
    x = jnp.asarray(x, self.dtype)
    conv, norm = _conv(self.dtype), _norm(train_norm, self.dtype)
    width = self.base_width
    if self.small_input:
      x = nn.relu(norm(name="stem_bn")(conv(width, (3, 3), padding=((1, 1), (1, 1)),
                                            name="stem_conv")(x)))
    else:
      if self.deep_stem:
        for i, (feat, stride) in enumerate(((width // 2, 2), (width // 2, 1), (width, 1))):
          x = conv(feat, (3, 3), stride, padding=((1, 1), (1, 1)), name=f"stem_conv{i}")(x)
          x = nn.relu(norm(name=f"stem_bn{i}")(x))
      else:
        x = conv(width, (7, 7), 2, padding=((3, 3), (3, 3)), name="stem_conv")(x)
        x = nn.relu(norm(name="stem_bn")(x))
      x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    aux["stem"] = x
    block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[self.block]
    for i, size in enumerate(self.stage_sizes):
      for j in range(size):
        x = block_cls(width * 2**i, strides=2 if i > 0 and j == 0 else 1,
                      avg_down=self.avg_down, dtype=self.dtype, sparse_ift=self.sparse_ift,
                      sparse_ift_sparsity=self.sparse_ift_sparsity,
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
