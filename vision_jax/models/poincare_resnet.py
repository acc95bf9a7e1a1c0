"""Poincaré ResNet (van Spengler, Berkhout & Mettes, "Poincaré ResNet", ICCV 2023)
and its two Euclidean comparisons, as in the paper's CIFAR experiments.

All three share the CIFAR ResNet-20/32 layout (He et al., 2016, Sec. 4.2):
a 3x3 stem with `widths[0]` channels, three groups of (depth - 2) / 6 basic
blocks at `widths` (8-16-32 in the paper) with stride 2 entering groups 2 and
3 through a strided 1x1 shortcut conv, global average pooling and a classifier.

- `hyperbolic`: every conv is a Poincaré conv, every norm a Poincaré midpoint
  batch norm, the skip connection is log_0(exp_0(f(x)) ⊕ exp_0(x)), and the
  classifier a Poincaré FC whose output (log_0) are the logits. ReLUs act on the
  tangent vectors between layers.
- `euclidean`: the same network with Euclidean convs (with bias), BatchNorm
  and Linear layers: the baseline of the paper's tables.
- `hybrid`: the Euclidean network with the Poincaré FC classifier.

Each hyperbolic layer has its own curvature (`c`, fixed 0.1 in the paper;
`learnable_c` learns each as a softplus). `custom_grads=False` differentiates
the same network with plain autodiff instead of the hand-written VJPs.
"""
import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from vision_jax.geometry.poincare import PoincareBall
from vision_jax.layers import poincare as hyp

Dtype = Any


@dataclasses.dataclass(frozen=True)
class LayerKind:
  """Constructors of one kind of layer (hyperbolic or Euclidean) for a network."""
  hyperbolic: bool
  train: bool
  c: float = 0.1
  learnable_c: bool = False
  custom_grads: bool = True

  def _hyp_kwargs(self) -> dict:
    return dict(c=self.c, learnable_c=self.learnable_c, custom_grads=self.custom_grads)

  def conv(self, features: int, kernel: int, strides: int, name: str) -> nn.Module:
    pad = kernel // 2
    if self.hyperbolic:
      return hyp.PoincareConv2d(features, kernel_size=(kernel, kernel), strides=strides,
                                padding=pad, name=name, **self._hyp_kwargs())
    return nn.Conv(features, (kernel, kernel), strides, padding=((pad, pad), (pad, pad)),
                   name=name)

  def norm(self, name: str) -> nn.Module:
    if self.hyperbolic:
      return hyp.PoincareBatchNorm(use_running_average=not self.train, name=name,
                                   **self._hyp_kwargs())
    # PyTorch's BatchNorm2d defaults: momentum 0.1 there = 0.9 here, eps 1e-5.
    return nn.BatchNorm(use_running_average=not self.train, momentum=0.9, epsilon=1e-5,
                        name=name)


class ResidualBlock(nn.Module):
  """conv-norm-ReLU-conv-norm, skip (strided 1x1 conv when downsampling), ReLU."""
  features: int
  strides: int
  layers: LayerKind

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    lay = self.layers
    y = nn.relu(lay.norm("bn1")(lay.conv(self.features, 3, self.strides, "conv1")(x)))
    y = lay.norm("bn2")(lay.conv(self.features, 3, 1, "conv2")(y))
    if self.strides != 1 or x.shape[-1] != self.features:
      x = lay.conv(self.features, 1, self.strides, "downsample")(x)
    if not lay.hyperbolic:
      return nn.relu(y + x)
    c = hyp.Curvature(lay.c, lay.learnable_c, name="skip_curvature")().astype(y.dtype)
    return nn.relu(hyp.poincare_residual(PoincareBall(lay.custom_grads), y, x, c))


class CifarResNet(nn.Module):
  """`__call__(images, train=...)` -> (logits, aux); aux["pre_logits"] is the pooled
  tangent vector that the (Poincaré) classifier maps onto the ball."""
  num_classes: int = 10
  depth: int = 20  # 6n + 2.
  widths: Sequence[int] = (8, 16, 32)
  hyperbolic_body: bool = True
  hyperbolic_head: bool = True
  c: float = 0.1
  learnable_c: bool = False
  custom_grads: bool = True
  dtype: Dtype = jnp.float32  # Hyperbolic ops are kept in float32 or wider.

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False):
    if (self.depth - 2) % 6:
      raise ValueError(f"depth={self.depth}: a CIFAR ResNet has depth 6n + 2 (20, 32, 44, ...).")
    blocks = (self.depth - 2) // 6
    lay = LayerKind(self.hyperbolic_body, train, self.c, self.learnable_c, self.custom_grads)
    aux = {}
    x = jnp.asarray(x, self.dtype)
    x = nn.relu(lay.norm("stem_bn")(lay.conv(self.widths[0], 3, 1, "stem_conv")(x)))
    for i, width in enumerate(self.widths):
      for j in range(blocks):
        x = ResidualBlock(width, 2 if i > 0 and j == 0 else 1, lay,
                          name=f"group{i + 1}_block{j + 1}")(x)
      aux[f"group{i + 1}"] = x
    x = jnp.mean(x, axis=(1, 2))
    aux["pre_logits"] = x
    if self.hyperbolic_head:
      logits = hyp.PoincareLinear(self.num_classes, c=self.c, learnable_c=self.learnable_c,
                                  custom_grads=self.custom_grads, name="head")(x)
    else:
      logits = nn.Dense(self.num_classes, name="head")(x)
    return jnp.asarray(logits, jnp.float32), aux


hyperbolic_resnet20 = functools.partial(CifarResNet, depth=20)
hyperbolic_resnet32 = functools.partial(CifarResNet, depth=32)
euclidean_resnet20 = functools.partial(CifarResNet, depth=20, hyperbolic_body=False,
                                       hyperbolic_head=False)
euclidean_resnet32 = functools.partial(CifarResNet, depth=32, hyperbolic_body=False,
                                       hyperbolic_head=False)
hybrid_resnet20 = functools.partial(CifarResNet, depth=20, hyperbolic_body=False)
hybrid_resnet32 = functools.partial(CifarResNet, depth=32, hyperbolic_body=False)
