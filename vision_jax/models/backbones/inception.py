"""Inception-v4 and Inception-ResNet-v2 (Szegedy, Ioffe, Vanhoucke & Alemi, 2016,
"Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning", arXiv:1602.07261).

Inception-v4 (Fig. 9): stem (Fig. 3: three 3x3 convs, Mixed-3a/4a/5a) ->
4 x Inception-A (Fig. 4) -> Reduction-A (Fig. 7) -> 7 x Inception-B (Fig. 5)
-> Reduction-B (Fig. 8) -> 3 x Inception-C (Fig. 6) -> average pool ->
dropout -> linear. Inception-ResNet-v2 (Fig. 15) as released with TF-slim
(and ported by timm): 3x3 convs 32, 32, 64 -> max pool -> 1x1 80 -> 3x3 192 ->
max pool -> Mixed-5b -> 10 x Block35 (scale 0.17) -> Mixed-6a -> 20 x
Block17 (0.10) -> Mixed-7a -> 9 x Block8 (0.20) -> Block8 (scale 1, no ReLU)
-> 1x1 conv 1536 -> pool -> linear. Residual blocks compute
`relu(x + scale * W(cat(branches)))` (Sec. 3.3, residual scaling), W a 1x1
conv with bias. Blocks: `inception_blocks.py`.

Exact parameter counts (timm, 1000 classes): inception_v4 42,679,816;
inception_resnet_v2 55,843,464.

Deliberate differences from the paper's figures, to match the released
networks whose weights exist: Inception-ResNet-v2's stem and block widths
are the released ones (Fig. 3's stem is Inception-v4's; the released Block35
projects 128 -> 320, not 384); padding is the released code's (VALID except
the size-keeping convs), so feature maps are not exactly H / stride.
BatchNorm uses eps 1e-3 and PyTorch's momentum 0.1 (0.9 here).

With `features_only` the levels are C1-C5 at strides 2, 4, 8, 16, 32 (timm's
feature taps: Inception-v4 features.2/.3/.9/.17/.21 with 64, 160, 384, 1024,
1536 channels; Inception-ResNet-v2 conv2d_2b, conv2d_4a, repeat, repeat_1,
conv2d_7b with 64, 192, 320, 1088, 1536). Because of the VALID convs and
pools their spatial sizes are smaller than H / stride: at 299 x 299,
Inception-v4 gives 147, 73, 35, 17, 8 and Inception-ResNet-v2 147, 71, 35,
17, 8. The smallest input is 75 x 75. Reference weights:
`inception_weights.py` (timm layouts).
"""
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.backbones import inception_blocks as blocks_lib

Dtype = Any


class _Inception(nn.Module):
  """Shared fields, stem convs and tail (levels, pooling, dropout, head)."""
  num_classes: int = 1000  # 0: no head; the output is the pooled features.
  dropout_rate: float = 0.0  # Before the classifier (the paper: keep 0.8; timm: 0).
  features_only: bool = False  # Backbone: the levels C1-C5, no pooling or head.
  norm_eval: bool = False  # BatchNorm on running statistics also in training.
  dtype: Dtype = jnp.float32  # Compute dtype; parameters stay float32.
  LEVEL_CHANNELS = ()  # Channels at strides 2, 4, 8, 16, 32.

  def stem(self, x, names: Sequence[str], train: bool):
    """3x3/2 conv 32 -> 3x3 conv 32 -> 3x3 conv 64 (padded): the first level."""
    conv = functools.partial(blocks_lib.ConvBN, dtype=self.dtype)
    x = conv(32, 3, 2, name=names[0])(jnp.asarray(x, self.dtype), train=train)
    x = conv(32, 3, name=names[1])(x, train=train)
    return conv(64, 3, padding=1, name=names[2])(x, train=train)

  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"C1": Level(2, ...), ..., "C5": Level(32, 1536)}."""
    return {features_lib.level_name(2**i): features_lib.Level(2**i, c)
            for i, c in enumerate(self.LEVEL_CHANNELS, start=1)}

  def outputs(self, x, taps: list, aux: dict, train: bool):
    levels = dict(zip(self.feature_levels(), taps))
    aux.update(levels)
    if self.features_only:
      return levels, aux
    x = jnp.mean(x, axis=(1, 2))
    aux["pre_logits"] = x
    if self.num_classes == 0:
      return x, aux
    x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


class InceptionV4(_Inception):
  """Inception-v4; `__call__(images, train=...)` -> (logits, aux)."""
  blocks: Sequence[int] = (4, 7, 3)  # Inception-A, -B, -C repeats (Fig. 9).
  LEVEL_CHANNELS = (64, 160, 384, 1024, 1536)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    t = train and not self.norm_eval
    x = self.stem(x, ("stem_0", "stem_1", "stem_2"), t)
    aux, taps = {}, [x]
    x = blocks_lib.Mixed3a(self.dtype, name="mixed_3a")(x, train=t)
    taps.append(x)
    x = blocks_lib.Mixed4a(self.dtype, name="mixed_4a")(x, train=t)
    x = blocks_lib.Mixed5a(self.dtype, name="mixed_5a")(x, train=t)
    stages = ((blocks_lib.InceptionA, "inception_a", blocks_lib.ReductionA, "reduction_a"),
              (blocks_lib.InceptionB, "inception_b", blocks_lib.ReductionB, "reduction_b"),
              (blocks_lib.InceptionC, "inception_c", None, None))
    for n, (block, name, reduction, reduction_name) in zip(self.blocks, stages):
      for j in range(n):
        x = block(self.dtype, name=f"{name}{j + 1}")(x, train=t)
      taps.append(x)
      if reduction is not None:
        x = reduction(self.dtype, name=reduction_name)(x, train=t)
    return self.outputs(x, taps, aux, train)


class InceptionResNetV2(_Inception):
  """Inception-ResNet-v2; `__call__(images, train=...)` -> (logits, aux)."""
  blocks: Sequence[int] = (10, 20, 9)  # Block35, Block17, Block8 repeats (Fig. 15).
  scales: Sequence[float] = (0.17, 0.10, 0.20)  # Their residual scales.
  LEVEL_CHANNELS = (64, 192, 320, 1088, 1536)

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    t = train and not self.norm_eval
    x = self.stem(x, ("conv2d_1a", "conv2d_2a", "conv2d_2b"), t)
    aux, taps = {}, [x]
    conv = functools.partial(blocks_lib.ConvBN, dtype=self.dtype)
    x = conv(80, 1, name="conv2d_3b")(blocks_lib.max_pool(x), train=t)
    x = conv(192, 3, name="conv2d_4a")(x, train=t)
    taps.append(x)
    x = blocks_lib.Mixed5b(self.dtype, name="mixed_5b")(blocks_lib.max_pool(x), train=t)
    stages = ((blocks_lib.Block35, "block35_", blocks_lib.Mixed6a, "mixed_6a"),
              (blocks_lib.Block17, "block17_", blocks_lib.Mixed7a, "mixed_7a"),
              (blocks_lib.Block8, "block8_", None, None))
    for n, scale, (block, name, reduction, reduction_name) in zip(self.blocks, self.scales,
                                                                 stages):
      for j in range(n):
        x = block(self.dtype, scale, name=f"{name}{j + 1}")(x, train=t)
      if reduction is not None:
        taps.append(x)
        x = reduction(self.dtype, name=reduction_name)(x, train=t)
    x = blocks_lib.Block8(self.dtype, 1.0, relu=False, name="block8_last")(x, train=t)
    x = conv(1536, 1, name="conv2d_7b")(x, train=t)
    taps.append(x)
    return self.outputs(x, taps, aux, train)


# Tensor parallelism over the "model" mesh axis: every conv (HWIO) and the head
# ([in, out]) split their output channels; BatchNorm and biases replicated.
PARTITION_RULES = ((r".*/kernel", (..., "model")),)

inception_v4 = functools.partial(InceptionV4)
inception_resnet_v2 = functools.partial(InceptionResNetV2)
