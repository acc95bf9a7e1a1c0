"""VoVNet (Lee et al., 2019, "An Energy and GPU-Computation Efficient Backbone
Network for Real-Time Object Detection", arXiv:1904.09730) and VoVNetV2 /
eSE-VoVNet (Lee & Park, 2020, "CenterMask: Real-Time Anchor-Free Instance
Segmentation", arXiv:1911.06667, Sec. 3.2), as timm builds them.

Every conv is Conv -> BatchNorm (eps 1e-5) -> ReLU without conv bias. Stem:
3x3 stride 2, 3x3, 3x3 stride 2 (widths `stem_features`; the depthwise models
make the last two depthwise-separable: a k x k per-channel conv, then a 1x1
conv, then one BatchNorm + ReLU). Stage i (0-based) starts with a 3x3 stride-2
max-pool in PyTorch's ceil mode (out = floor(H / 2) rows; an even-sized map
gets one extra window over its last two rows) for i > 0 and stacks `blocks[i]`
One-Shot Aggregation blocks:

  x_0 = x  (depthwise models: x_0' = 1x1 conv(x) to `mid` channels when the
            input has another width, and the chain starts from x_0')
  x_k = Conv3x3(x_{k-1}),  k = 1..L          (L = `layers`, `mid` channels each)
  y   = Conv1x1(Concat(x, x_1, ..., x_L))    (`out` channels)
  y   = y * hard_sigmoid(W Mean_hw(y) + b)   (eSE, last block of a stage only;
                                              W a 1x1 conv with bias,
                                              hard_sigmoid(z) = ReLU6(z + 3) / 6)
  y   = y + x                                (V2 residual, not the first block)

then global average pooling and a linear classifier. Exact parameter counts
(timm 1.0.31, 1000 classes): vovnet39a 22,600,296; vovnet57a 36,640,296;
ese_vovnet19b_dw 6,543,080; ese_vovnet39b 24,568,936; ese_vovnet57b
38,608,936.

With `features_only` the stage outputs are the levels C2-C5 (strides 4-32,
256/512/768/1024 channels); `stem_level=True` puts the stem's second conv
output first as C1 (stride 2, `stem_features[1]` channels: timm's
features_only "stem.1", detectron2's stem level), which an FPN choosing
levels by stride ignores. `norm_eval` keeps every BatchNorm on its running
statistics in training (detection fine-tuning).

Differences from timm, on purpose: stochastic depth (`drop_path_rate`, rates
rising linearly over the blocks as timm's) drops only residual branches; timm
also applies it to the output of blocks without a residual, which zeroes an
example's whole feature map. The eSE bias starts at zero (PyTorch: uniform).
Reference weights: `vovnet_weights.py` (timm layout).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers.drop_path import DropPath
from vision_jax.models import features as features_lib

Dtype = Any
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # timm's kaiming fan_out.


def _padding(kernel: int, strides: int) -> tuple[tuple[int, int], tuple[int, int]]:
  """timm's static symmetric padding ((stride - 1) + (kernel - 1)) // 2."""
  p = ((strides - 1) + (kernel - 1)) // 2
  return ((p, p), (p, p))


def max_pool_ceil(x: jnp.ndarray) -> jnp.ndarray:
  """PyTorch's MaxPool2d(3, stride=2, ceil_mode=True) on NHWC: floor(H / 2) x
  floor(W / 2) windows; an even side is padded by one (ignored) row/column."""
  pads = tuple((0, 1 - n % 2) for n in x.shape[1:3])
  return nn.max_pool(x, (3, 3), (2, 2), padding=pads)


class ConvBnReLU(nn.Module):
  """k x k conv (or depthwise-separable k x k + 1x1) -> BatchNorm -> ReLU."""
  features: int
  kernel: int = 1
  strides: int = 1
  separable: bool = False  # Depthwise k x k then 1x1, one BatchNorm after both.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype, kernel_init=conv_init)
    window, pad = (self.kernel, self.kernel), _padding(self.kernel, self.strides)
    if self.separable:
      x = conv(x.shape[-1], window, self.strides, padding=pad,
               feature_group_count=x.shape[-1], name="conv_dw")(x)
      x = conv(self.features, (1, 1), name="conv_pw")(x)
    else:
      x = conv(self.features, window, self.strides, padding=pad, name="conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, name="bn")(x)
    return nn.relu(x)


class EffectiveSE(nn.Module):
  """eSE (CenterMask Sec. 3.2): x * hard_sigmoid(fc(mean_hw(x))), fc a 1x1 conv
  with bias and as many channels out as in."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    s = jnp.mean(x, axis=(1, 2), keepdims=True)
    s = nn.Conv(x.shape[-1], (1, 1), dtype=self.dtype, kernel_init=conv_init, name="fc")(s)
    return x * jax.nn.hard_sigmoid(s)


class OsaBlock(nn.Module):
  """One-Shot Aggregation: L chained 3x3 convs, all concatenated once with the
  input, a 1x1 conv; then eSE and the identity residual where enabled."""
  mid_features: int
  out_features: int
  layers: int
  residual: bool = False
  depthwise: bool = False
  ese: bool = False
  drop_path: float = 0.0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool, norm_train: bool):
    outputs, y = [x], x
    if self.depthwise and x.shape[-1] != self.mid_features:
      y = ConvBnReLU(self.mid_features, dtype=self.dtype, name="conv_reduction")(
          y, train=norm_train)
    for k in range(self.layers):
      y = ConvBnReLU(self.mid_features, 3, separable=self.depthwise, dtype=self.dtype,
                     name=f"mid{k}")(y, train=norm_train)
      outputs.append(y)
    y = ConvBnReLU(self.out_features, dtype=self.dtype, name="concat")(
        jnp.concatenate(outputs, axis=-1), train=norm_train)
    if self.ese:
      y = EffectiveSE(self.dtype, name="attn")(y)
    if self.residual:
      y = x + DropPath(self.drop_path, name="drop_path")(y, train=train)
    return y


class VoVNet(nn.Module):
  """VoVNet classifier / backbone; `__call__(images, train=...)` -> (logits, aux)."""
  blocks: Sequence[int] = (1, 1, 2, 2)  # OSA blocks per stage.
  layers: int = 5  # 3x3 convs per OSA block.
  stem_features: Sequence[int] = (64, 64, 128)  # The three stem convs' widths.
  mid_features: Sequence[int] = (128, 160, 192, 224)  # Per stage: each 3x3 conv's width.
  out_features: Sequence[int] = (256, 512, 768, 1024)  # Per stage: the 1x1 aggregation's width.
  residual: bool = False  # V2: identity shortcut on every block but a stage's first.
  depthwise: bool = False  # Depthwise-separable 3x3s (stem's last two, every block conv).
  ese: bool = False  # V2: effective squeeze-excitation on the last block of each stage.
  num_classes: int = 1000  # 0: no head; the output is the pooled features.
  drop_rate: float = 0.0  # Dropout before the classifier.
  drop_path_rate: float = 0.0  # Stochastic depth of the last block; 0 at the first.
  features_only: bool = False  # Backbone: the level maps, no pooling or head.
  stem_level: bool = False  # features_only: also the stride-2 stem map as C1 (timm's 5 maps).
  norm_eval: bool = False  # BatchNorm on running statistics also in training.
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C2": Level(4, 256), ..., "C5": Level(32, 1024)}, after "C1": Level(2, 64)
    with `stem_level`."""
    levels = [features_lib.Level(2, self.stem_features[1])] if self.stem_level else []
    levels += [features_lib.Level(4 * 2**i, self.out_features[i]) for i in range(len(self.blocks))]
    return {features_lib.level_name(level.stride): level for level in levels}

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    aux = {}
    norm_train = train and not self.norm_eval
    x = jnp.asarray(x, self.dtype)
    for k, (width, strides) in enumerate(zip(self.stem_features, (2, 1, 2))):
      x = ConvBnReLU(width, 3, strides, separable=self.depthwise and k > 0, dtype=self.dtype,
                     name=f"stem{k}")(x, train=norm_train)
      aux[f"stem{k}"] = x
    rates = np.linspace(0.0, self.drop_path_rate, sum(self.blocks))
    index = 0
    for i, size in enumerate(self.blocks):
      if i > 0:
        x = max_pool_ceil(x)
      for j in range(size):
        x = OsaBlock(self.mid_features[i], self.out_features[i], self.layers,
                     residual=self.residual and j > 0, depthwise=self.depthwise,
                     ese=self.ese and j == size - 1, drop_path=float(rates[index]),
                     dtype=self.dtype, name=f"stage{i}_block{j}")(
                         x, train=train, norm_train=norm_train)
        index += 1
      aux[f"stage{i}"] = x
    if self.features_only:
      maps = ([aux["stem1"]] if self.stem_level else []) + [
          aux[f"stage{i}"] for i in range(len(self.blocks))]
      return dict(zip(self.feature_levels(), maps)), aux
    x = jnp.mean(x, axis=(1, 2))
    aux["pre_logits"] = x
    if self.num_classes == 0:
      return x, aux
    x = nn.Dropout(self.drop_rate, deterministic=not train)(x)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


# Tensor parallelism over the "model" mesh axis: every conv (depthwise ones too: their
# HWIO kernels' last axis is the channel) and the head split their output channels;
# BatchNorm and biases replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)

vovnet39a = functools.partial(VoVNet, blocks=(1, 1, 2, 2))
vovnet57a = functools.partial(VoVNet, blocks=(1, 1, 4, 3))
ese_vovnet19b_dw = functools.partial(VoVNet, blocks=(1, 1, 1, 1), layers=3,
                                     stem_features=(64, 64, 64), residual=True,
                                     depthwise=True, ese=True)
ese_vovnet39b = functools.partial(vovnet39a, residual=True, ese=True)
ese_vovnet57b = functools.partial(vovnet57a, residual=True, ese=True)
