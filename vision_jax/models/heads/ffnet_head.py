"""The FFNet up-head (Mehta et al., "Simple and Efficient Architectures for
Semantic Segmentation", CVPR-W 2022, Sec. 3, Fig. 2 and 3) and its optional
input pre-downsampling.

Four backbone maps (strides s, 2s, 4s, 8s) go through
- `AdapterConv`: a 1x1 ConvBNReLU per map to the up-head's base channels
  (up-head A: 64, 128, 256, 512; B: 64, 128, 128, 256; C: 128 x 4);
- `UpBranch` (FANet-style top-down path): at each scale a 1x1 ConvBNReLU
  projects the coarser map to the finer one's channels, it is upsampled and
  added; a 3x3 ConvBNReLU per scale gives the outputs (A: 128 x 4; B: 96, 96,
  64, 32; C: 128, 16, 16, 16, finest first);
- `UpsampleCat`: every output upsampled to the finest map and concatenated
  (A 512, B 288, C 176 channels);
- a segmentation head: 3x3 conv (bias) + BN + ReLU + conv to the classes;
  A: 512 mid channels + 1x1; B: 256 + 3x3; C: 128 + 1x1.
GPU models upsample bilinearly with align_corners=True, mobile ones nearest.

`pre_down` (the "_pre_down" models, trained on 1024x512 crops of the
2048x1024 images): reflect-pad one row top and bottom, then a depthwise 5x5
Gaussian (sigma 0.7, scipy's `gaussian_filter` of a centred impulse) at
stride 2 without padding. The kernel is a constant, not a parameter.
Parameter counts [official code @2291ae7, 19 classes]: up-head A + seg head A
on 64-512 channel maps 4,000,531; B + B on ResNetS 1,208,147; C + C on
ResNetS 549,747.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers import interpolate
from vision_jax.models.backbones.ffnet import ConvBNReLU, conv, norm
from vision_jax.models.necks.fpn import upsample_nearest

Dtype = Any

# Up-head type -> (AdapterConv output channels, UpBranch output channels), finest first.
UP_HEADS = {
    "A": ((64, 128, 256, 512), (128, 128, 128, 128)),
    "B": ((64, 128, 128, 256), (96, 96, 64, 32)),
    "C": ((128, 128, 128, 128), (128, 16, 16, 16)),
}
# Segmentation head type -> (mid channels, kernel of the classifier conv).
SEG_HEADS = {"A": (512, 1), "B": (256, 3), "C": (128, 1)}
UPSAMPLE = ("bilinear", "nearest")


def upsample(x: jax.Array, size: Sequence[int], mode: str) -> jax.Array:
  """PyTorch `interpolate(size=...)`: "bilinear" with align_corners=True (GPU
  models) or "nearest" (mobile models)."""
  if mode == "bilinear":
    return interpolate.resize_bilinear(x, tuple(size), align_corners=True)
  if mode == "nearest":
    return upsample_nearest(x, tuple(size))
  raise ValueError(f"upsample must be one of {UPSAMPLE}, got {mode!r}.")


def gaussian_kernel(size: int = 5, sigma: float = 0.7, truncate: float = 4.0) -> np.ndarray:
  """[size, size] kernel = scipy.ndimage.gaussian_filter(impulse, sigma) (the
  official `GaussianConv2D`): the sampled 1-D Gaussian of radius
  int(truncate * sigma + 0.5), normalised, applied to a centred impulse with
  scipy's default "reflect" boundary (tails folded back at the edges), as an
  outer product of the two 1-D results. Sums to 1."""
  radius = int(truncate * sigma + 0.5)
  taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  taps /= taps.sum()
  line, centre = np.zeros(size), size // 2
  for offset, weight in zip(range(-radius, radius + 1), taps):
    i = centre + offset
    while not 0 <= i < size:  # Half-sample symmetric reflection: -1 -> 0, size -> size - 1.
      i = -i - 1 if i < 0 else 2 * size - 1 - i
    line[i] += weight
  return np.outer(line, line).astype(np.float32)


def smooth_and_downsample(images: jax.Array, size: int = 5, sigma: float = 0.7) -> jax.Array:
  """[B, H, W, C] -> [B, (H - 3) // 2 + 1, (W - size) // 2 + 1, C]: reflect-pad
  one row top and bottom, depthwise Gaussian at stride 2, no padding."""
  x = jnp.pad(images, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="reflect")
  channels = x.shape[-1]
  kernel = np.tile(gaussian_kernel(size, sigma)[:, :, None, None], (1, 1, 1, channels))
  return jax.lax.conv_general_dilated(
      x, jnp.asarray(kernel, x.dtype), (2, 2), "VALID",
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


class AdapterConv(nn.Module):
  """A 1x1 ConvBNReLU per branch to `features[k]` channels."""
  features: Sequence[int]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array], *, train: bool):
    if len(maps) != len(self.features):
      raise ValueError(f"AdapterConv has {len(self.features)} branches, got {len(maps)} maps.")
    return [ConvBNReLU(f, 1, dtype=self.dtype, name=f"adapter_conv{k}")(x, train=train)
            for k, (x, f) in enumerate(zip(maps, self.features))]


class UpBranch(nn.Module):
  """FANet-style top-down fusion of four maps (finest first) -> four maps of
  `features` channels at their own scales (finest first)."""
  features: Sequence[int] = (128, 128, 128, 128)
  upsample_mode: str = "bilinear"  # Or "nearest" (mobile).
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array], *, train: bool):
    cbr = functools.partial(ConvBNReLU, dtype=self.dtype)
    outs = [None] * 4
    x = maps[3]
    for level, scale in ((3, 32), (2, 16), (1, 8)):  # Names as the official code's.
      outs[level] = cbr(self.features[level], 3, name=f"fam_{scale}_sm")(x, train=train)
      finer = maps[level - 1]
      up = cbr(finer.shape[-1], 1, name=f"fam_{scale}_up")(x, train=train)
      x = upsample(up, finer.shape[1:3], self.upsample_mode) + finer
    outs[0] = cbr(self.features[0], 3, name="fam_4")(x, train=train)
    return outs


class UpsampleCat(nn.Module):
  """Every map upsampled to the first one's size, concatenated on channels."""
  upsample_mode: str = "bilinear"

  def __call__(self, maps: Sequence[jax.Array]):
    size = maps[0].shape[1:3]
    return jnp.concatenate(
        [maps[0]] + [upsample(x, size, self.upsample_mode) for x in maps[1:]], -1)


class SegmentationHead(nn.Module):
  """3x3 conv (bias) + BN + ReLU + `kernel` x `kernel` conv (bias) to the classes
  (official `SegmentationHead_NoSigmoid_{1x1,3x3}`)."""
  num_classes: int
  mid_features: int = 512
  kernel: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = conv(self.mid_features, 3, name="conv1", dtype=self.dtype, use_bias=True)(x)
    x = nn.relu(norm(train, name="bn", dtype=self.dtype)(x))
    return conv(self.num_classes, self.kernel, name="conv2", dtype=self.dtype, use_bias=True)(x)


class FFNetHead(nn.Module):
  """AdapterConv -> UpBranch -> UpsampleCat -> segmentation head.
  `__call__(maps, train=...)` -> (logits at the finest map's size, aux)."""
  num_classes: int = 19
  up_head: str = "A"  # "A", "B" or "C": the channel plan of `UP_HEADS`.
  seg_head: str = "A"  # "A", "B" or "C" of `SEG_HEADS`.
  upsample_mode: str = "bilinear"  # "bilinear" (align_corners=True, GPU) or "nearest" (mobile).
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array], *, train: bool = False):
    if self.up_head not in UP_HEADS or self.seg_head not in SEG_HEADS:
      raise ValueError(f"up_head and seg_head must be in {tuple(UP_HEADS)}, got "
                       f"{self.up_head!r}, {self.seg_head!r}.")
    base, outs = UP_HEADS[self.up_head]
    maps = AdapterConv(base, self.dtype, name="adapter")(maps, train=train)
    maps = UpBranch(outs, self.upsample_mode, self.dtype, name="up")(maps, train=train)
    x = UpsampleCat(self.upsample_mode)(maps)
    mid, kernel = SEG_HEADS[self.seg_head]
    logits = SegmentationHead(self.num_classes, mid, kernel, self.dtype, name="seg")(x,
                                                                                     train=train)
    return logits, {"up": maps, "features": x}
