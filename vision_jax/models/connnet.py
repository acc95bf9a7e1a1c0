"""ConnNet (Kampffmeyer, Dong, Liang, Jenssen, "ConnNet: A Long-Range
Relation-Aware Pixel-Connectivity Network for Salient Segmentation", IEEE
TIP 2019, arXiv:1804.07836): any backbone of the model table + a decoder of
multi-level cascade contexts with a long-range (non-local) relation block +
the connectivity head, predicting for every pixel the probability that it and
each of its 8 neighbours are both salient (`vision_jax.tasks.saliency`).

The paper builds on a ResNet with a feature-pyramid top-down pathway, fuses
the pyramid levels by upsampling streams into one map and models long-range
pixel relations with a non-local block (Wang et al., "Non-local Neural
Networks", CVPR 2018). The text fixes no widths or placements; chosen here:

- the non-local block (embedded Gaussian, inner width C/2, output 1x1 conv
  zero-initialised so it starts as the identity) on the coarsest backbone
  level (C5), whose relations the top-down pathway then carries to every
  level (`nonlocal_block=False` drops it);
- the top-down pathway: the FPN of `vision_jax.models.necks.fpn` on the
  levels of `in_strides` (C2-C5), `decoder_features` wide;
- the upsampling streams: per level a 3x3 conv + ReLU to `stream_features`,
  bilinear upsampling to the finest level (stride min(in_strides), 1/4) and
  concatenation (the cascade of contexts);
- the head: `head_convs` 3x3 conv + ReLU, 1x1 conv to 8 logits.

`__call__(images, train=...)` -> ({"connectivity": float32 [B, H/s, W/s, 8]
logits}, aux) with s = min(in_strides); the task resizes them to the label.
"""
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.layers.interpolate import resize_bilinear
from vision_jax.models import features as features_lib
from vision_jax.models.heads.connectivity_head import NUM_NEIGHBOURS, ConnectivityHead
from vision_jax.models.necks.fpn import FPN, conv3x3

Dtype = Any


class NonLocalBlock(nn.Module):
  """Embedded-Gaussian non-local block (Wang et al. 2018, Eqs. 1-2, 6):
  z = x + W softmax(theta(x) phi(x)^T) g(x), all 1x1 convs, W zero-initialised."""
  inner: int | None = None  # Width of theta, phi, g; None: C / 2.
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    inner = self.inner or max(c // 2, 1)
    conv = lambda n, name, **kw: nn.Conv(n, (1, 1), dtype=self.dtype, name=name, **kw)
    flat = lambda y: y.reshape(b, h * w, -1)
    theta, phi, g = (flat(conv(inner, n)(x)) for n in ("theta", "phi", "g"))
    attention = jax.nn.softmax(jnp.einsum("bic,bjc->bij", theta, phi).astype(jnp.float32), -1)
    y = jnp.einsum("bij,bjc->bic", attention.astype(g.dtype), g).reshape(b, h, w, inner)
    return x + conv(c, "out", kernel_init=nn.initializers.zeros)(y)


class ConnNet(features_lib.WithBackbone, nn.Module):
  """Backbone + top-down pyramid + upsampling streams + connectivity head."""
  backbone: str = "resnet50"  # A model name with `features_only`.
  backbone_args: dict | None = None  # Its constructor arguments.
  in_strides: Sequence[int] = (4, 8, 16, 32)  # Backbone levels the decoder reads (C2-C5).
  decoder_features: int = 256  # Width of the top-down pathway.
  stream_features: int = 128  # Width of each level's upsampling stream.
  head_features: int = 256
  head_convs: int = 1
  nonlocal_block: bool = True  # Long-range relations on the coarsest level.
  dtype: Dtype = jnp.float32

  num_neighbours = NUM_NEIGHBOURS  # Output channels (checked by the connectivity task).


  def feature_levels(self) -> dict[str, features_lib.Level]:
    """{"connectivity": Level(min(in_strides), 8)} (no compute); fails naming
    the backbone's levels when it lacks one of `in_strides`."""
    features_lib.select(self.backbone_levels(), self.in_strides, "ConnNet")
    return {"connectivity": features_lib.Level(min(self.in_strides), NUM_NEIGHBOURS)}

  @nn.compact
  def __call__(self, images, *, train: bool = False):
    strides = tuple(sorted(self.in_strides))
    backbone = self.part("backbone", name="backbone")
    levels, _ = backbone(jnp.asarray(images, self.dtype), train=train)
    names = [features_lib.level_name(s) for s in strides]
    missing = [n for n in names if n not in levels]
    if missing:
      raise ValueError(f"ConnNet needs backbone levels {names}; got {list(levels)}.")
    levels = dict(levels)
    if self.nonlocal_block:
      levels[names[-1]] = NonLocalBlock(dtype=self.dtype, name="nonlocal")(levels[names[-1]])
    pyramid = list(FPN(self.decoder_features, strides, len(strides), self.dtype,
                       name="fpn")(levels).values())
    size = pyramid[0].shape[1:3]
    streams = [resize_bilinear(nn.relu(conv3x3(self.stream_features, f"stream{i}", self.dtype)(p)),
                               size) for i, p in enumerate(pyramid)]
    fused = jnp.concatenate(streams, -1)
    logits = ConnectivityHead(self.head_features, self.head_convs, NUM_NEIGHBOURS, self.dtype,
                              name="head")(fused)
    return {"connectivity": logits}, {"levels": tuple(tuple(p.shape[1:3]) for p in pyramid)}
