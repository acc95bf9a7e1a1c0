r"""Sparse training on scikit-learn's digits: every method on the embedded data.

  python -m vision_jax.main --config=configs/sparsity/digits.py:method=rigl,density=0.1 \
      --workdir=/tmp/rigl

Arguments: method = dense | uniform | erk | er | gmp | rigl | set | granet |
imp | imp_ap | gmp_ap (iterative magnitude pruning with rewinding to the
initialisation, IMP_FRACTION per cycle; AP beside IMP or GMP) |
sift_wide | sift_parallel | sift_factorized | sift_doped (Sparse-IFT, at
sparsity 1 - density, trained with RigL);
density = the share of the masked weights kept; width = the ResNet-18's base
width (16: the dense digits demo; large-sparse vs small-dense compares
widths at equal non-zeros); epochs; seed. Every kernel but the stem's and
the classifier's is masked (144 and 1,280 weights at width 16; at 10% a
per-layer schedule would leave the classifier 128 weights for 10 classes);
the schedules are the papers' scaled to the run: GMP prunes from 10% to 70%
of training every 10 steps; RigL / SET replace a cosine-decayed 30% every
10 steps until 75%; GraNet starts from random ERK masks at min(1, 2 x
density) (its CIFAR recipe: 0.5) and prunes globally on the same cubic
schedule, regrowing (0.5 -> 0.005) every 10 steps.
"""
import math
import os

import jax
import jax.numpy as jnp

from vision_jax import config as config_lib, models
from vision_jax.layers import sparse_ift
from vision_jax.sparsity import isoflop

DIGITS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resnet",
                      "digits.py")

STATIC = ("uniform", "erk", "er")
SPARSE_IFT = ("sift_wide", "sift_parallel", "sift_factorized", "sift_doped")
PRUNING = ("imp", "imp_ap", "gmp_ap")
METHODS = ("dense", *STATIC, "gmp", "rigl", "set", "granet", *PRUNING, *SPARSE_IFT)
IMP_FRACTION = 0.5  # Per cycle (the official 20% needs 8 cycles for 80%: too long here).


def sparsity_spec(method: str, density: float, total_epochs: float) -> dict:
  """The `sparsity` transform spec of `method` for a run of `total_epochs`."""
  spec = {"name": "sparsity", "density": density, "exclude": "(stem_conv|head)/kernel"}
  if method in STATIC:
    return {**spec, "method": "static", "distribution": method}
  schedule = {"begin_epochs": 0.1 * total_epochs, "end_epochs": 0.7 * total_epochs,
              "frequency_steps": 10}
  if method in ("gmp", "gmp_ap"):
    ap = {"scope": "global", "ap_fraction": 0.005} if method == "gmp_ap" else {}
    return {**spec, "method": "gmp", **schedule, **ap}
  if method in ("imp", "imp_ap"):
    ap = {"ap_fraction": 0.1 * IMP_FRACTION} if method == "imp_ap" else {}  # Official 2 of 20.
    return {**spec, "method": "imp", "prune_fraction": IMP_FRACTION,
            "cycle_epochs": total_epochs / (imp_cycles(density) + 1), **ap}
  if method in ("rigl", "set"):
    return {**spec, "method": method, "distribution": "erk", "frequency_steps": 10}
  return {**spec, "method": "granet", "distribution": "erk",
          "initial_density": min(1.0, 2.0 * density), **schedule}


def imp_cycles(density: float) -> int:
  """Pruning cycles of IMP to reach `density` at IMP_FRACTION per cycle."""
  return int(math.ceil(math.log(density) / math.log(1.0 - IMP_FRACTION) - 1e-9))


def sparse_ift_spec(c, family: str, density: float) -> dict:
  """Sparse-IFT `family` at sparsity 1 - density on config `c`'s ResNet,
  trained with RigL as the official code (uniform densities, every kernel but
  the stem's and head's, drop 0.3 cosine, updates until 80% of training;
  the doped family's low-rank factors dense; Sparse Wide's density solved
  for the dense network's FLOPs)."""
  c.model.sparse_ift = family
  c.model.sparse_ift_sparsity = 1.0 - density
  exclude = r"(stem_conv|head)/kernel"
  if family == "doped":
    exclude = f"({exclude}|{sparse_ift.DOPED_DENSE})"
  if family == "wide":
    make = models.MODELS.get(c.model.name)
    args = {k: v for k, v in c.model.items() if k != "name"}
    inputs = (jax.ShapeDtypeStruct((16, 16, 1), jnp.float32),)
    density = isoflop.wide_density(make(**{**args, "sparse_ift": "dense"}), make(**args), inputs,
                                   exclude=exclude)
  return {"name": "sparsity", "method": "rigl", "density": density, "distribution": "uniform",
          "exclude": exclude, "drop_fraction": 0.3, "frequency_steps": 10,
          "end_epochs": 0.8 * c.total_epochs}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, method="dense", density=0.1, width=16, epochs=30.0, seed=0)
  if arg.method not in METHODS:
    raise config_lib.ConfigError(f"method={arg.method!r}: choose one of {list(METHODS)}.")
  c = config_lib.load(f"{DIGITS}:variant=r18")
  c.seed = arg.seed
  c.model.width = arg.width
  c.total_epochs = arg.epochs
  c.evaluators.eval = {"kind": "classification"}
  c.evaluators.dnr = {"kind": "dead_neurons"}  # Dead-neuron rates of the stem and stages.
  if arg.method in ("imp", "imp_ap"):  # The lr schedule restarts with every cycle.
    c.schedule.cycle_epochs = arg.epochs / (imp_cycles(arg.density) + 1)
  if arg.method in SPARSE_IFT:
    c.optimizer.transforms = (sparse_ift_spec(c, arg.method[len("sift_"):], arg.density),)
  elif arg.method != "dense":
    c.optimizer.transforms = (sparsity_spec(arg.method, arg.density, arg.epochs),)
  return c
