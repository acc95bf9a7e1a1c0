"""Sparse Iso-FLOP Transformations (Thangarasa et al., "Sparse-IFT", ICML 2023;
official code CerebrasResearch/Sparse-IFT): a conv (+ its norm) replaced by a
larger sparse computation costing the dense layer's FLOPs at sparsity s.

With base_scaling = round(1 / (1 - s)), a k x k conv f_in -> f_out becomes

  wide        the whole network widened by sqrt(base_scaling) (a width, see
              `wide_width`; its density is solved for the dense FLOPs);
  parallel    base_scaling sparse branches conv_i -> norm_i, summed
              (the official BlockISOFlopParallel);
  factorized  conv k x k f_in -> r, norm, ReLU, conv 1x1 r -> f_out (both
              sparse), r = ceil(k^2 f_in f_out / ((1 - s)(k^2 f_in + f_out)))
              (LowRankConv3x3, uv_layer="nonlinear_relu");
  doped       a sparse k x k conv plus a dense low-rank U (k x k, f_in -> r)
              V (1x1, r -> f_out), r = floor(s k^2 f_in f_out / (k^2 f_in + f_out))
              (DopedConv3x3).

Every family keeps its output named like the dense layer's and is followed by
the layer's norm, so a block swaps `norm(conv(x))` for `IsoFlopConvNorm`. The
masks come from the `sparsity` optimizer transform; for `doped` its `exclude`
must leave U and V dense (`DOPED_DENSE`): the FLOP identity assumes they are
(the official generic mask filter would also sparsify them).
"""
import math
from typing import Any, Callable

import flax.linen as nn

FAMILIES = ("dense", "wide", "parallel", "factorized", "doped")
DOPED_DENSE = r".*/low_rank_(u|v)/kernel"  # The doped family's dense low-rank factors.


def base_scaling(sparsity: float) -> int:
  """round(1 / (1 - s)): the official scaling (0.5 -> 2, 0.75 -> 4, 0.9 -> 10)."""
  return int(round(1.0 / (1.0 - sparsity)))


def wide_width(width: int, sparsity: float) -> int:
  """int(width sqrt(base_scaling)), the official Sparse Wide base width."""
  return int(width * math.sqrt(base_scaling(sparsity)))


def factorized_rank(k2: int, f_in: int, f_out: int, sparsity: float) -> int:
  return int(math.ceil(k2 * f_in * f_out / ((1.0 - sparsity) * (k2 * f_in + f_out))))


def doped_rank(k2: int, f_in: int, f_out: int, sparsity: float) -> int:
  return int(math.floor(sparsity * k2 * f_in * f_out / (k2 * f_in + f_out)))


class IsoFlopConvNorm(nn.Module):
  """`norm(conv(x))` of one dense layer, or its Sparse-IFT family at `sparsity`;
  `conv` / `norm` are the layer's own factories (e.g. bias-free conv, BatchNorm)."""
  features: int
  kernel_size: tuple[int, int]
  strides: int
  padding: Any
  family: str
  sparsity: float
  conv: Callable[..., nn.Module]
  norm: Callable[..., nn.Module]
  norm_args: dict | None = None  # e.g. scale_init of a block's last norm.

  @nn.compact
  def __call__(self, x):
    if self.family not in FAMILIES or self.family == "wide":
      raise ValueError(f"IsoFlopConvNorm family must be one of {FAMILIES[2:]} or 'dense', "
                       f"got {self.family!r} ('wide' is a width, not a layer).")
    full = dict(features=self.features, kernel_size=self.kernel_size, strides=self.strides,
                padding=self.padding)
    norm_args = dict(self.norm_args or {})
    if self.family == "dense":
      return self.norm(name="norm", **norm_args)(self.conv(name="conv", **full)(x))
    if self.family == "parallel":
      return sum(self.norm(name=f"norm_{i}", **norm_args)(self.conv(name=f"conv_{i}", **full)(x))
                 for i in range(base_scaling(self.sparsity)))
    k2, f_in = math.prod(self.kernel_size), x.shape[-1]
    if self.family == "factorized":
      rank = factorized_rank(k2, f_in, self.features, self.sparsity)
      u = self.conv(name="factor_u", **{**full, "features": rank})(x)
      u = nn.relu(self.norm(name="factor_norm")(u))
      y = self.conv(self.features, (1, 1), name="factor_v")(u)
      return self.norm(name="norm", **norm_args)(y)
    rank = doped_rank(k2, f_in, self.features, self.sparsity)
    y = self.conv(name="conv", **full)(x)
    if rank > 0:
      u = self.conv(name="low_rank_u", **{**full, "features": rank})(x)
      y = y + self.conv(self.features, (1, 1), name="low_rank_v")(u)
    return self.norm(name="norm", **norm_args)(y)
