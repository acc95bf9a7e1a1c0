"""SCNN lane detector (Pan et al., "Spatial As Deep: Spatial CNN for Traffic
Scene Understanding", AAAI 2018), as the PyTorch port of the official code
(harryhan618/SCNN_Pytorch `model.py`) builds it:

- backbone: VGG16-BN's features (3x3 convs with bias + BN + ReLU) with pool4
  and pool5 removed and conv5_1-3 dilated x2 (padding 2): stride 8, 512 ch;
- layer1: 3x3 conv dilation 4 (512 -> 1024) + BN + ReLU, 1x1 (1024 -> 128)
  + BN + ReLU, both without bias;
- spatial message passing D, U, R, L (Eq. 1; `vision_jax.layers.scnn`);
- layer2: Dropout2d(0.1) (whole channels), 1x1 conv 128 -> 5 (background + 4
  lanes); bilinearly upsampled x8 with align_corners=True -> "logits";
- existence branch (Sec. 4): softmax over the 5 classes of the 1/8 map,
  2x2 average pool, flattened in PyTorch's (C, H, W) order, FC -> 128, ReLU,
  FC -> 4 -> "exist" (logits; the port's Sigmoid is left to the loss).

At 800 x 288 input: 20,742,217 parameters = backbone 14,723,136 + layer1
4,851,968 + message passing 589,824 + seg conv 645 + existence FCs 576,644
(/work/shared/reference/dense.md, Sec. 5). The existence FC's input size,
5 (W/16)(H/16), follows the input size.

Initialisation: backbone convs kaiming-normal fan-out (torchvision VGG), the
other convs and FCs PyTorch's default uniform(+-1/sqrt(fan_in)) kernels with
zero biases, BN scale 1 and bias 0, message passing as the Lua code.
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers import scnn as scnn_layers

Dtype = Any
vgg_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # torchvision VGG.
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

# VGG16 conv widths per stage; a 2x2 max pool follows stages 1-3 only.
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def _norm(train: bool, dtype: Dtype):
  """BatchNorm with PyTorch's defaults (momentum 0.1 there = 0.9 here, eps 1e-5)."""
  return functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                           epsilon=1e-5, dtype=dtype)


def interpolation_matrix(size_in: int, size_out: int) -> np.ndarray:
  """[size_out, size_in] weights of 1-D linear interpolation with
  align_corners=True (source = target * (in - 1) / (out - 1))."""
  if size_out == 1 or size_in == 1:
    m = np.zeros((size_out, size_in), np.float32)
    m[:, 0] = 1.0
    return m
  src = np.arange(size_out, dtype=np.float64) * (size_in - 1) / (size_out - 1)
  lo = np.clip(np.floor(src).astype(np.int64), 0, size_in - 2)
  frac = src - lo
  m = np.zeros((size_out, size_in), np.float64)
  m[np.arange(size_out), lo] = 1.0 - frac
  m[np.arange(size_out), lo + 1] += frac
  return m.astype(np.float32)


def resize_bilinear_align_corners(x: jax.Array, size: tuple[int, int]) -> jax.Array:
  """PyTorch's F.interpolate(mode='bilinear', align_corners=True) of NHWC x."""
  wy = jnp.asarray(interpolation_matrix(x.shape[1], size[0]), x.dtype)
  wx = jnp.asarray(interpolation_matrix(x.shape[2], size[1]), x.dtype)
  return jnp.einsum("oh,bhwc,pw->bopc", wy, x, wx)


class VGG16BNFeatures(nn.Module):
  """VGG16-BN features, pool4/pool5 removed, conv5_x dilated x2 (stride 8)."""
  stages: Sequence[Sequence[int]] = VGG16_STAGES
  pooled_stages: int = 3  # A 2x2 max pool after each of the first stages.
  dilated_stages: Sequence[int] = (4,)  # 0-based stages with dilation 2.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = _norm(train, self.dtype)
    for i, widths in enumerate(self.stages):
      d = 2 if i in self.dilated_stages else 1
      for j, width in enumerate(widths):
        x = nn.Conv(width, (3, 3), padding=((d, d), (d, d)), kernel_dilation=(d, d),
                    dtype=self.dtype, kernel_init=vgg_init, name=f"conv{i + 1}_{j + 1}")(x)
        x = nn.relu(norm(name=f"bn{i + 1}_{j + 1}")(x))
      if i < self.pooled_stages:
        x = nn.max_pool(x, (2, 2), (2, 2))
    return x


class SCNN(nn.Module):
  """`__call__(images [B, H, W, 3], train=...)` -> ({"logits": [B, 8h, 8w, 5],
  "exist": [B, 4]}, aux) with (h, w) the 1/8 feature size (= (H, W) / 8)."""
  backbone_stages: Sequence[Sequence[int]] = VGG16_STAGES  # VGG conv widths per stage.
  layer1_features: int = 1024  # Width of layer1's dilated conv.
  num_classes: int = 5  # Background + lanes.
  num_lanes: int = 4  # Outputs of the existence branch.
  kernel_size: int = 9  # Message-passing conv width (ms_ks).
  hidden: int = 128  # Channels of the message-passing layer.
  exist_hidden: int = 128  # Width of the existence branch's first FC.
  dropout: float = 0.1  # Dropout2d before the seg conv.
  upsample: int = 8  # Bilinear factor from the 1/8 map to the logits.
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    aux = {}
    x = jnp.asarray(x, self.dtype)
    norm = _norm(train, self.dtype)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             kernel_init=torch_default_init)
    x = VGG16BNFeatures(self.backbone_stages, dtype=self.dtype, name="backbone")(x, train=train)
    aux["backbone"] = x
    x = conv(self.layer1_features, (3, 3), padding=((4, 4), (4, 4)), kernel_dilation=(4, 4),
             name="layer1_conv1")(x)
    x = nn.relu(norm(name="layer1_bn1")(x))
    x = conv(self.hidden, (1, 1), name="layer1_conv2")(x)
    x = nn.relu(norm(name="layer1_bn2")(x))
    aux["layer1"] = x
    x = scnn_layers.MessagePassing(self.kernel_size, self.dtype, name="message_passing")(x)
    aux["message_passing"] = x
    x = nn.Dropout(self.dropout, broadcast_dims=(1, 2))(x, deterministic=not train)
    seg = nn.Conv(self.num_classes, (1, 1), dtype=self.dtype, kernel_init=torch_default_init,
                  bias_init=nn.initializers.zeros, name="layer2_conv")(x)
    seg = jnp.asarray(seg, jnp.float32)
    aux["seg_small"] = seg
    _, h, w, _ = seg.shape
    logits = resize_bilinear_align_corners(seg, (h * self.upsample, w * self.upsample))

    p = nn.avg_pool(jax.nn.softmax(seg, axis=-1), (2, 2), (2, 2))
    p = jnp.transpose(p, (0, 3, 1, 2)).reshape(p.shape[0], -1)  # PyTorch's view order.
    dense = functools.partial(nn.Dense, dtype=self.dtype, kernel_init=torch_default_init,
                              bias_init=nn.initializers.zeros)
    e = nn.relu(dense(self.exist_hidden, name="fc1")(p))
    exist = jnp.asarray(dense(self.num_lanes, name="fc2")(e), jnp.float32)
    return {"logits": logits, "exist": exist}, aux


# Tensor parallelism over the "model" mesh axis: conv and FC kernels split their
# output channels; BatchNorm and biases replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)

scnn_vgg16 = functools.partial(SCNN)
