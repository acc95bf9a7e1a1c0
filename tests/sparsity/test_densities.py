"""Layer-wise densities of random pruning: equal to the official code's
(VITA-Group/Random_Pruning, numbers in the reference notes) on a CIFAR ResNet-20."""
import numpy as np
import pytest

from vision_jax.sparsity import densities


def resnet20_kernels() -> dict[str, tuple[int, ...]]:
  """Flax kernel shapes of the reference ResNet-20 (widths 16-32-64): convs
  [kh, kw, in, out], the classifier [in, out], in the reference's order."""
  shapes, c_in = {"conv1": (3, 3, 3, 16)}, 16
  for s, c in enumerate((16, 32, 64)):
    for b in range(3):
      shapes[f"s{s}b{b}.conv1"] = (3, 3, c_in, c)
      shapes[f"s{s}b{b}.conv2"] = (3, 3, c, c)
      if c_in != c:
        shapes[f"s{s}b{b}.shortcut"] = (1, 1, c_in, c)
      c_in = c
  shapes["fc"] = (64, 10)
  return shapes


# Official densities (6 decimals) of every layer.
ERK_10 = {
    "conv1": 0.982985, "s0b0.conv1": 0.280151, "s0b0.conv2": 0.280151, "s0b1.conv1": 0.280151,
    "s0b1.conv2": 0.280151, "s0b2.conv1": 0.280151, "s0b2.conv2": 0.280151,
    "s1b0.conv1": 0.199055, "s1b0.conv2": 0.129017, "s1b0.shortcut": 1.0, "s1b1.conv1": 0.129017,
    "s1b1.conv2": 0.129017, "s1b2.conv1": 0.129017, "s1b2.conv2": 0.129017,
    "s2b0.conv1": 0.093998, "s2b0.conv2": 0.061744, "s2b0.shortcut": 0.812806,
    "s2b1.conv1": 0.061744, "s2b1.conv2": 0.061744, "s2b2.conv1": 0.061744,
    "s2b2.conv2": 0.061744, "fc": 1.0}
ERK_05 = {
    "conv1": 0.474768, "s0b0.conv1": 0.135309, "s0b0.conv2": 0.135309, "s0b1.conv1": 0.135309,
    "s0b1.conv2": 0.135309, "s0b2.conv1": 0.135309, "s0b2.conv2": 0.135309,
    "s1b0.conv1": 0.096141, "s1b0.conv2": 0.062313, "s1b0.shortcut": 0.801172,
    "s1b1.conv1": 0.062313, "s1b1.conv2": 0.062313, "s1b2.conv1": 0.062313,
    "s1b2.conv2": 0.062313, "s2b0.conv1": 0.0454, "s2b0.conv2": 0.029821,
    "s2b0.shortcut": 0.392574, "s2b1.conv1": 0.029821, "s2b1.conv2": 0.029821,
    "s2b2.conv1": 0.029821, "s2b2.conv2": 0.029821, "fc": 0.948587}
ER_05 = {
    "conv1": 0.444826, "s0b0.conv1": 0.140471, "s0b0.conv2": 0.140471, "s0b1.conv1": 0.140471,
    "s0b1.conv2": 0.140471, "s0b2.conv1": 0.140471, "s0b2.conv2": 0.140471,
    "s1b0.conv1": 0.105353, "s1b0.conv2": 0.070236, "s1b0.shortcut": 0.105353,
    "s1b1.conv1": 0.070236, "s1b1.conv2": 0.070236, "s1b2.conv1": 0.070236,
    "s1b2.conv2": 0.070236, "s2b0.conv1": 0.052677, "s2b0.conv2": 0.035118,
    "s2b0.shortcut": 0.052677, "s2b1.conv1": 0.035118, "s2b1.conv2": 0.035118,
    "s2b2.conv1": 0.035118, "s2b2.conv2": 0.035118, "fc": 0.129936}


@pytest.mark.parametrize("method, density, reference", [
    ("erk", 0.1, ERK_10), ("erk", 0.05, ERK_05), ("er", 0.05, ER_05)])
def test_densities_equal_the_official_code(method, density, reference):
  shapes = resnet20_kernels()
  got = densities.layer_densities(shapes, density, method)
  assert list(got) == list(reference)
  assert {n: round(d, 6) for n, d in got.items()} == reference
  np.testing.assert_allclose(densities.overall_density(shapes, got), density, rtol=1e-12)


def test_uniform_and_bad_arguments():
  shapes = resnet20_kernels()
  assert set(densities.layer_densities(shapes, 0.2, "uniform").values()) == {0.2}
  assert set(densities.layer_densities(shapes, 1.0, "erk").values()) == {1.0}
  with pytest.raises(ValueError, match=r"Unknown density method 'erk\+'"):
    densities.layer_densities(shapes, 0.1, "erk+")
  with pytest.raises(ValueError, match=r"in \(0, 1\], got 0.0"):
    densities.layer_densities(shapes, 0.0)


def test_plus_variants_follow_the_official_formulas():
  shapes = resnet20_kernels()
  sizes = {n: float(np.prod(s)) for n, s in shapes.items()}
  total = sum(sizes.values())
  got = densities.layer_densities(shapes, 0.1, "uniform_plus", first="conv1", classifier="fc")
  rest = (total * 0.1 - sizes["conv1"] - 0.2 * sizes["fc"]) / total  # CIFAR core.py's formula.
  assert (got["conv1"], got["fc"]) == (1.0, 0.2)
  assert all(d == pytest.approx(rest, rel=1e-12) for n, d in got.items() if n not in ("conv1", "fc"))
  above = densities.layer_densities(shapes, 0.3, "uniform_plus", first="conv1", classifier="fc")
  assert above["conv1"] == 1.0 and set(v for n, v in above.items() if n != "conv1") == {0.3}
  plus = densities.layer_densities(shapes, 0.05, "erk_plus", classifier="fc")
  assert plus["fc"] == 1.0  # The official commands' --fc_density 1.0.
  np.testing.assert_allclose(densities.overall_density(shapes, plus), 0.05, rtol=1e-12)
  others = {n: s for n, s in shapes.items() if n != "fc"}
  solved = densities.layer_densities(others, (total * 0.05 - sizes["fc"]) / (total - sizes["fc"]))
  assert {n: plus[n] for n in others} == pytest.approx(solved, rel=1e-12)
  with pytest.raises(ValueError, match="needs the classifier layer"):
    densities.layer_densities(shapes, 0.05, "erk_plus", classifier="head")
