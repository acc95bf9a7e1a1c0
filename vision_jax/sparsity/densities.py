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
"""
from typing import Mapping, Sequence

import numpy as np

METHODS = ("uniform", "er", "erk")


def _score(shape: Sequence[int], method: str, power: float) -> float:
  dims = tuple(shape) if method == "erk" else tuple(shape)[-2:]
  return (sum(dims) / float(np.prod(dims))) ** power


def layer_densities(shapes: Mapping[str, Sequence[int]], density: float, method: str = "erk",
                    power: float = 1.0) -> dict[str, float]:
  """{layer: density} for the masked layers `shapes` (name -> kernel shape),
  whose parameter-weighted mean is `density`."""
  if method not in METHODS:
    raise ValueError(f"Unknown density method {method!r}; choose one of {METHODS}.")
  if not 0.0 < density <= 1.0:
    raise ValueError(f"The target density must lie in (0, 1], got {density}.")
  if method == "uniform":
    return {name: float(density) for name in shapes}
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
