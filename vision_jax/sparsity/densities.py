"""Layer-wise densities of a sparse network at a target overall density.

Liu et al., "The Unreasonable Effectiveness of Random Pruning" (ICLR 2022),
as its official code computes them (VITA-Group/Random_Pruning,
sparselearning/core.py): `uniform` gives every masked layer the target
density; Erdős–Rényi (`er`) and its kernel version (`erk`, Evci et al.,
RigL, 2020) make layer l's density proportional to a score

  ERK: raw_l = (sum(shape_l) / prod(shape_l)) ** power      (every dimension)
  ER:  raw_l = (n_in + n_out) / (n_in * n_out)                (the two channel dims)

scaled by one epsilon so that the overall density is exactly the target:

  epsilon = (sum_{l not dense} n_l d - sum_{l dense} n_l (1 - d)) / sum_{l not dense} raw_l n_l

while max_l raw_l epsilon > 1, the layers of the largest score become dense
(density 1) and epsilon is recomputed. Shapes are Flax kernels: [kh, kw, in,
out] convs and [in, out] Dense kernels (ERK's score does not depend on the
layout; ER reads the last two dimensions, the channels).

The "+" variants of the same code keep the ends of the network denser:
`uniform_plus` (CIFAR core.py) leaves the first layer dense and, below
density 0.2, the classifier at 0.2 and every other layer at
(N d - n_first - 0.2 n_classifier) / N, N counting all masked layers (so the
overall density is the target only approximately: the official quirk, kept);
`erk_plus` (ImageNet core.py) gives the classifier `classifier_density` (1
in the official commands) and solves ERK over the other layers at
(N d - n_classifier classifier_density) / (N - n_classifier), overall exact.
"""
from typing import Mapping, Sequence

import numpy as np

METHODS = ("uniform", "uniform_plus", "er", "erk", "erk_plus")


def _score(shape: Sequence[int], method: str, power: float) -> float:
  dims = tuple(shape) if method == "erk" else tuple(shape)[-2:]
  return (sum(dims) / float(np.prod(dims))) ** power


def layer_densities(shapes: Mapping[str, Sequence[int]], density: float, method: str = "erk",
                    power: float = 1.0, first: str | None = None, classifier: str | None = None,
                    classifier_density: float = 1.0) -> dict[str, float]:
  """{layer: density} for the masked layers `shapes` (name -> kernel shape),
  whose parameter-weighted mean is `density`; `first` / `classifier` name the
  layers the "+" methods treat apart."""
  if method not in METHODS:
    raise ValueError(f"Unknown density method {method!r}; choose one of {METHODS}.")
  if not 0.0 < density <= 1.0:
    raise ValueError(f"The target density must lie in (0, 1], got {density}.")
  needed = {"uniform_plus": ("first", "classifier"), "erk_plus": ("classifier",)}.get(method, ())
  for role, name in (("first", first), ("classifier", classifier)):
    if role in needed and name not in shapes:
      raise ValueError(f"Density method {method!r} needs the {role} layer among the masked "
                       f"layers; got {role}={name!r}, layers {list(shapes)[:3]}...")
  if method == "uniform":
    return {name: float(density) for name in shapes}
  if method == "uniform_plus":
    return _uniform_plus(shapes, density, first, classifier)
  if method == "erk_plus":
    return _erk_plus(shapes, density, classifier, classifier_density, power)
  return _solve(shapes, density, method, power)


def _uniform_plus(shapes, density: float, first: str, classifier: str) -> dict[str, float]:
  sizes = {name: float(np.prod(shape)) for name, shape in shapes.items()}
  total = sum(sizes.values())
  out = {name: float(density) for name in shapes}
  if density < 0.2:
    rest = (total * density - sizes[first] - 0.2 * sizes[classifier]) / total
    if rest <= 0:
      raise ValueError(f"uniform_plus at density {density}: the dense first layer and the "
                       "classifier at 0.2 already exceed the budget.")
    out = {name: rest for name in shapes}
    out[classifier] = 0.2
  out[first] = 1.0
  return out


def _erk_plus(shapes, density: float, classifier: str, classifier_density: float,
              power: float) -> dict[str, float]:
  sizes = {name: float(np.prod(shape)) for name, shape in shapes.items()}
  rest = {name: shape for name, shape in shapes.items() if name != classifier}
  rest_density = ((sum(sizes.values()) * density - sizes[classifier] * classifier_density)
                  / sum(sizes[n] for n in rest))
  if not 0.0 < rest_density <= 1.0:
    raise ValueError(f"erk_plus: the classifier at density {classifier_density} leaves density "
                     f"{rest_density:.4f} for the other layers; it must lie in (0, 1].")
  out = _solve(rest, rest_density, "erk", power)
  return {name: classifier_density if name == classifier else out[name] for name in shapes}


def _solve(shapes, density: float, method: str, power: float) -> dict[str, float]:
  """ER / ERK: epsilon solved with the dense set grown until no density exceeds 1."""
  sizes = {name: float(np.prod(shape)) for name, shape in shapes.items()}
  raw = {name: _score(shape, method, power) for name, shape in shapes.items()}
  dense: set[str] = set()
  while True:
    sparse = [n for n in shapes if n not in dense]
    if not sparse:  # Every layer dense: only possible at density 1.
      return {name: 1.0 for name in shapes}
    rhs = (sum(sizes[n] * density for n in sparse)
           - sum(sizes[n] * (1.0 - density) for n in dense))
    epsilon = rhs / sum(raw[n] * sizes[n] for n in sparse)
    top = max(raw[n] for n in sparse)
    if top * epsilon <= 1.0:
      break
    dense.update(n for n in sparse if raw[n] == top)
  return {name: 1.0 if name in dense else epsilon * raw[name] for name in shapes}


def overall_density(shapes: Mapping[str, Sequence[int]], densities: Mapping[str, float]) -> float:
  """The parameter-weighted mean of `densities` over `shapes`."""
  sizes = {name: float(np.prod(shape)) for name, shape in shapes.items()}
  return sum(sizes[n] * densities[n] for n in shapes) / sum(sizes.values())
