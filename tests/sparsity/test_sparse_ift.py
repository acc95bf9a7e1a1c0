"""Sparse-IFT: every family costs its dense layer's FLOPs at sparsity s (within
the rank rounding), Sparse Wide's solved density the dense network's."""
import math
import re

import jax
import pytest

from vision_jax.layers import sparse_ift
from vision_jax.models.backbones import resnet
from vision_jax.sparsity import densities, isoflop, transform

INPUTS = (jax.ShapeDtypeStruct((16, 16, 3), "float32"),)
MASK_ALL = dict(include=r".*kernel", exclude=r"(stem_conv|head)/kernel")


def block_conv_costs(model, sparsity: float, dense_factors: str | None = None) -> dict:
  """{block conv: sparse multiply-adds}: its kernels' FLOPs x (1 - s), those
  matching `dense_factors` at full cost."""
  _, flops = isoflop.model_flops(model, INPUTS)
  out = {}
  for name, f in flops.items():
    match = re.fullmatch(r"(stage\d+_block\d+/conv\d+)/.*", name)
    if match:
      scale = 1.0 if dense_factors and re.fullmatch(dense_factors, name) else 1.0 - sparsity
      out[match.group(1)] = out.get(match.group(1), 0.0) + f * scale
  return out


@pytest.mark.parametrize("arch, sparsities", [("resnet18", (0.5, 0.75, 0.9)),
                                               ("resnet50", (0.9,))])
def test_each_family_costs_the_dense_layers_flops(arch, sparsities):
  make = getattr(resnet, arch)
  params, _ = isoflop.model_flops(make(num_classes=10, width=8, small_input=True), INPUTS)
  dense = block_conv_costs(make(num_classes=10, width=8, small_input=True), 0.0)
  for sparsity in sparsities:
    for family in ("parallel", "factorized", "doped"):
      model = make(num_classes=10, width=8, small_input=True, sparse_ift=family,
                   sparse_ift_sparsity=sparsity)
      got = block_conv_costs(model, sparsity,
                             sparse_ift.DOPED_DENSE if family == "doped" else None)
      assert set(got) == set(dense)
      for layer, cost in got.items():
        block, conv = layer.split("/")
        kh, kw, f_in, f_out = params[block][conv]["kernel"].shape
        rank_cost = dense[layer] / (kh * kw * f_in * f_out) * (kh * kw * f_in + f_out)
        if family == "parallel":  # base_scaling (1 - s) = 1 at these s.
          assert cost == pytest.approx(dense[layer], rel=1e-12), (family, layer)
        elif family == "factorized":  # ceil(r): at most one extra (sparse) rank.
          assert 0 <= cost - dense[layer] <= (1 - sparsity) * rank_cost + 1e-6, (layer, sparsity)
        else:  # floor(r): at most one (dense) rank short.
          assert 0 <= dense[layer] - cost <= rank_cost + 1e-6, (layer, sparsity)


def test_family_layers_follow_the_official_formulas():
  model = resnet.resnet18(num_classes=10, width=8, small_input=True, sparse_ift="parallel",
                          sparse_ift_sparsity=0.75)
  params, _ = isoflop.model_flops(model, INPUTS)
  conv1 = params["stage2_block1"]["conv1"]
  assert sorted(conv1) == [f"conv_{i}" for i in range(4)] + [f"norm_{i}" for i in range(4)]
  assert sparse_ift.base_scaling(0.5) == 2 and sparse_ift.base_scaling(0.9) == 10
  # Factorized 3x3 16 -> 16 at s = 0.5: ceil(9 * 16 * 16 / (0.5 * (9 * 16 + 16))) = 29.
  model = resnet.resnet18(num_classes=10, width=8, small_input=True, sparse_ift="factorized",
                          sparse_ift_sparsity=0.5)
  params, _ = isoflop.model_flops(model, INPUTS)
  assert params["stage2_block2"]["conv1"]["factor_u"]["kernel"].shape == (3, 3, 16, 29)
  assert params["stage2_block2"]["conv1"]["factor_v"]["kernel"].shape == (1, 1, 29, 16)
  # Doped at s = 0.9: floor(0.9 * 9 * 16 * 16 / (9 * 16 + 16)) = 12.
  model = resnet.resnet18(num_classes=10, width=8, small_input=True, sparse_ift="doped",
                          sparse_ift_sparsity=0.9)
  params, _ = isoflop.model_flops(model, INPUTS)
  assert params["stage2_block2"]["conv1"]["low_rank_u"]["kernel"].shape == (3, 3, 16, 12)
  assert params["stage2_block2"]["conv1"]["conv"]["kernel"].shape == (3, 3, 16, 16)


@pytest.mark.parametrize("sparsity, width", [(0.5, 11), (0.75, 16), (0.9, 25)])
def test_sparse_wide_density_matches_the_dense_networks_flops(sparsity, width):
  dense = resnet.resnet18(num_classes=10, width=8, small_input=True)
  wide = resnet.resnet18(num_classes=10, width=8, small_input=True, sparse_ift="wide",
                         sparse_ift_sparsity=sparsity)
  assert wide.base_width == width == int(8 * math.sqrt(round(1 / (1 - sparsity))))
  density = isoflop.wide_density(dense, wide, INPUTS, **MASK_ALL)
  _, dense_flops = isoflop.model_flops(dense, INPUTS)
  params, wide_flops = isoflop.model_flops(wide, INPUTS)
  masked = transform.selected_shapes(params, **MASK_ALL)
  cost = isoflop.sparse_flops(wide_flops, densities.layer_densities(masked, density, "uniform"))
  assert cost == pytest.approx(isoflop.sparse_flops(dense_flops, {}), rel=1e-9)
  assert density == pytest.approx(1 - sparsity, abs=0.1)  # The stem and head stay dense.


def test_bad_family_or_sparsity_is_named():
  with pytest.raises(ValueError, match="sparse_ift must be one of"):
    isoflop.model_flops(resnet.resnet18(num_classes=10, sparse_ift="deep"), INPUTS)
  with pytest.raises(ValueError, match=r"needs sparse_ift_sparsity in \(0, 1\), got 0.0"):
    isoflop.model_flops(resnet.resnet18(num_classes=10, sparse_ift="parallel"), INPUTS)
