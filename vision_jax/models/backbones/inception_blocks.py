"""The blocks of Inception-v4 and Inception-ResNet-v2 (Szegedy et al., 2016,
arXiv:1602.07261; Inception-v4: Figs. 3-8, Inception-ResNet-v2: Figs. 7 and
16-19), in the layout of the released TF-slim / timm networks.

Every conv is `ConvBN`: a bias-free conv, BatchNorm (eps 1e-3) and ReLU,
VALID unless a block pads explicitly (PyTorch-style symmetric padding, so
"same" 1x7 / 7x1 / 3x3 convs keep the size and the strided 3x3s shrink it to
floor((n - 3) / 2) + 1). Max pools are 3x3 stride 2 VALID (floor); the
average pools in the 4-branch blocks are 3x3 stride 1 padded by 1 and divide
by the number of real pixels (count_include_pad=False). Branches concatenate
in the reference's order, so reference weights map one to one.

Residual blocks (Inception-ResNet-v2): `y = relu(x + scale * W(cat(branches)))`,
W a 1x1 conv with bias that projects back to the input width; the last
Block8 has scale 1 and no ReLU.

Submodule names: a branch that is a sequence of convs is `branch<i>_<j>`
(j = position in the sequence; the pool before a conv counts, as in timm),
a single conv `branch<i>`, Inception-C keeps the reference's own names.
"""
import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any
BN_EPSILON = 1e-3  # TF-slim's and timm's Inception BatchNorm.
conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")  # He-normal, fan-in.


def _pair(v) -> tuple[int, int]:
  return (v, v) if isinstance(v, int) else tuple(v)


class ConvBN(nn.Module):
  """conv (no bias) -> BatchNorm -> ReLU; `padding` per side (h, w), 0 = VALID."""
  features: int
  kernel: Any = 1  # int or (kh, kw).
  strides: int = 1
  padding: Any = 0  # int or (ph, pw), added on both sides.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    ph, pw = _pair(self.padding)
    x = nn.Conv(self.features, _pair(self.kernel), self.strides, padding=((ph, ph), (pw, pw)),
                use_bias=False, dtype=self.dtype, kernel_init=conv_init, name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON,
                     dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


def max_pool(x):
  """3x3 stride-2 max pool, no padding, floor (PyTorch MaxPool2d(3, 2))."""
  return nn.max_pool(x, (3, 3), (2, 2), padding="VALID")


def avg_pool(x):
  """3x3 stride-1 average over the real pixels (AvgPool2d(3, 1, 1, count_include_pad=False))."""
  return nn.avg_pool(x, (3, 3), (1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


class _Block(nn.Module):
  """A block of ConvBN branches; `conv` and `chain` build them by name."""
  dtype: Dtype = jnp.float32

  def conv(self, x, name, features, kernel=1, strides=1, padding=0, *, train):
    return ConvBN(features, kernel, strides, padding, self.dtype, name=name)(x, train=train)

  def chain(self, x, name, specs, *, train, start=0):
    """Convs `name_<start>`, `name_<start+1>`, ... from (features, kernel, strides, padding)."""
    for j, spec in enumerate(specs, start=start):
      x = self.conv(x, f"{name}_{j}", *spec, train=train)
    return x


cat = functools.partial(jnp.concatenate, axis=-1)


# ----- Inception-v4 (Figs. 3-9) -----

class Mixed3a(_Block):
  """Stem: max pool || 3x3/2 conv 96 -> 160 channels."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    return cat([max_pool(x), self.conv(x, "conv", 96, 3, 2, train=train)])


class Mixed4a(_Block):
  """Stem: 1x1 -> 3x3 || 1x1 -> 1x7 -> 7x1 -> 3x3 (all 96 out, VALID 3x3s) -> 192."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.chain(x, "branch0", [(64, 1), (96, 3)], train=train)
    b1 = self.chain(x, "branch1", [(64, 1), (64, (1, 7), 1, (0, 3)), (64, (7, 1), 1, (3, 0)),
                                   (96, 3)], train=train)
    return cat([b0, b1])


class Mixed5a(_Block):
  """Stem: 3x3/2 conv 192 || max pool -> 384."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    return cat([self.conv(x, "conv", 192, 3, 2, train=train), max_pool(x)])


class InceptionA(_Block):
  """35x35 block (Fig. 4): 96 || 64-96 || 64-96-96 (3x3s) || avg pool-96 -> 384."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 96, train=train)
    b1 = self.chain(x, "branch1", [(64, 1), (96, 3, 1, 1)], train=train)
    b2 = self.chain(x, "branch2", [(64, 1), (96, 3, 1, 1), (96, 3, 1, 1)], train=train)
    b3 = self.conv(avg_pool(x), "branch3_1", 96, train=train)
    return cat([b0, b1, b2, b3])


class ReductionA(_Block):
  """35 -> 17 (Fig. 7, k=192, l=224, m=256, n=384): 3x3/2 || 1x1-3x3-3x3/2 || max pool."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 384, 3, 2, train=train)
    b1 = self.chain(x, "branch1", [(192, 1), (224, 3, 1, 1), (256, 3, 2)], train=train)
    return cat([b0, b1, max_pool(x)])


class InceptionB(_Block):
  """17x17 block (Fig. 5): 384 || 1x7-7x1 || 7x1-1x7-7x1-1x7 || avg pool-128 -> 1024."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    row, col = ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0))
    b0 = self.conv(x, "branch0", 384, train=train)
    b1 = self.chain(x, "branch1", [(192, 1), (224, *row), (256, *col)], train=train)
    b2 = self.chain(x, "branch2", [(192, 1), (192, *col), (224, *row), (224, *col),
                                   (256, *row)], train=train)
    b3 = self.conv(avg_pool(x), "branch3_1", 128, train=train)
    return cat([b0, b1, b2, b3])


class ReductionB(_Block):
  """17 -> 8 (Fig. 8): 1x1-3x3/2 || 1x1-1x7-7x1-3x3/2 || max pool -> 1536."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.chain(x, "branch0", [(192, 1), (192, 3, 2)], train=train)
    b1 = self.chain(x, "branch1", [(256, 1), (256, (1, 7), 1, (0, 3)), (320, (7, 1), 1, (3, 0)),
                                   (320, 3, 2)], train=train)
    return cat([b0, b1, max_pool(x)])


class InceptionC(_Block):
  """8x8 block (Fig. 6): 256 || 1x1 -> (1x3 || 3x1) || 1x1-3x1-1x3 -> (1x3 || 3x1)
  || avg pool-256 -> 1536."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    row, col = ((1, 3), 1, (0, 1)), ((3, 1), 1, (1, 0))
    b0 = self.conv(x, "branch0", 256, train=train)
    y = self.conv(x, "branch1_0", 384, train=train)
    b1 = [self.conv(y, "branch1_1a", 256, *row, train=train),
          self.conv(y, "branch1_1b", 256, *col, train=train)]
    y = self.conv(x, "branch2_0", 384, train=train)
    y = self.conv(y, "branch2_1", 448, *col, train=train)
    y = self.conv(y, "branch2_2", 512, *row, train=train)
    b2 = [self.conv(y, "branch2_3a", 256, *row, train=train),
          self.conv(y, "branch2_3b", 256, *col, train=train)]
    b3 = self.conv(avg_pool(x), "branch3_1", 256, train=train)
    return cat([b0, *b1, *b2, b3])


# ----- Inception-ResNet-v2 (Figs. 7, 16-19, with the released widths) -----

class Mixed5b(_Block):
  """Stem end: 96 || 48-64 (5x5) || 64-96-96 || avg pool-64 -> 320."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 96, train=train)
    b1 = self.chain(x, "branch1", [(48, 1), (64, 5, 1, 2)], train=train)
    b2 = self.chain(x, "branch2", [(64, 1), (96, 3, 1, 1), (96, 3, 1, 1)], train=train)
    b3 = self.conv(avg_pool(x), "branch3_1", 64, train=train)
    return cat([b0, b1, b2, b3])


class _Residual(_Block):
  """relu(x + scale * conv2d(cat(branches))); conv2d a 1x1 conv with bias."""
  scale: float = 1.0
  relu: bool = True

  def residual(self, x, branches):
    y = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, kernel_init=conv_init,
                name="conv2d")(cat(branches))
    y = x + self.scale * y
    return nn.relu(y) if self.relu else y


class Block35(_Residual):
  """Inception-ResNet-A (Fig. 16), 320 channels at 35x35."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 32, train=train)
    b1 = self.chain(x, "branch1", [(32, 1), (32, 3, 1, 1)], train=train)
    b2 = self.chain(x, "branch2", [(32, 1), (48, 3, 1, 1), (64, 3, 1, 1)], train=train)
    return self.residual(x, [b0, b1, b2])


class Mixed6a(_Block):
  """35 -> 17 (Fig. 7 with k=256, l=256, m=384, n=384) -> 1088."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 384, 3, 2, train=train)
    b1 = self.chain(x, "branch1", [(256, 1), (256, 3, 1, 1), (384, 3, 2)], train=train)
    return cat([b0, b1, max_pool(x)])


class Block17(_Residual):
  """Inception-ResNet-B (Fig. 17), 1088 channels at 17x17."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 192, train=train)
    b1 = self.chain(x, "branch1", [(128, 1), (160, (1, 7), 1, (0, 3)), (192, (7, 1), 1, (3, 0))],
                    train=train)
    return self.residual(x, [b0, b1])


class Mixed7a(_Block):
  """17 -> 8 (Fig. 18): 1x1-3x3/2 || 1x1-3x3/2 || 1x1-3x3-3x3/2 || max pool -> 2080."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.chain(x, "branch0", [(256, 1), (384, 3, 2)], train=train)
    b1 = self.chain(x, "branch1", [(256, 1), (288, 3, 2)], train=train)
    b2 = self.chain(x, "branch2", [(256, 1), (288, 3, 1, 1), (320, 3, 2)], train=train)
    return cat([b0, b1, b2, max_pool(x)])


class Block8(_Residual):
  """Inception-ResNet-C (Fig. 19), 2080 channels at 8x8."""

  @nn.compact
  def __call__(self, x, *, train: bool):
    b0 = self.conv(x, "branch0", 192, train=train)
    b1 = self.chain(x, "branch1", [(192, 1), (224, (1, 3), 1, (0, 1)), (256, (3, 1), 1, (1, 0))],
                    train=train)
    return self.residual(x, [b0, b1])
