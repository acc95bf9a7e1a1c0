"""The sparse-training methods as mask schedules: which masks a run starts
from and how they change at step t (one optimizer step = one t).

- `static`: random masks at layer-wise densities, never changed (Liu et al.,
  "The Unreasonable Effectiveness of Random Pruning", ICLR 2022).
- `gmp`: dense start, magnitude pruning on the cubic schedule every
  `frequency_steps` from `begin_steps` to `end_steps` (Zhu & Gupta 2017),
  per layer (keep round(n_l (1 - s_t))) or global (keep floor(N (1 - s_t)),
  as GraNet's GMP).
- `rigl` / `set`: random masks at layer-wise densities; every
  `frequency_steps` until `end_steps` (RigL: 75% of training) each layer
  drops ceil(r_t nnz_l) smallest-|w| weights and regrows as many by |dense
  gradient| (RigL, Evci et al. 2020) or at random (SET, Mocanu et al. 2018),
  r_t cosine from `drop_fraction` to `drop_fraction_final` over `end_steps`.
- `granet`: random masks at `initial_density`, GMP's cubic pruning (global by
  default) to `density`, and at each update step neuroregeneration: the
  drop-and-grow of RigL with r_t cosine 0.5 -> 0.005 over the whole run
  (Liu et al., "Sparse Training via Boosting Pruning Plasticity with
  Neuroregeneration", NeurIPS 2021; official code `core.py`: prune, then
  truncate_weights, every `update_frequency` steps).

Grown weights start at 0; a weight dropped and regrown in one update keeps
its value (both official codes' default). GraNet's code stops pruning one
update before `final_prune_epoch`, short of the target; here the last
pruning step is `end_steps` itself, so the run ends exactly at `density`.
"""
import dataclasses

COMMON = {"density": None, "include": r".*kernel", "exclude": None, "seed": 0,
          "total_steps": None}
DISTRIBUTION = {"distribution": "erk", "first": None, "classifier": None,
                "classifier_density": 1.0}
SCHEDULE = {"begin_steps": 0, "end_steps": None, "frequency_steps": 100}
# Each method's arguments beside COMMON, with their defaults.
METHODS = {
    "static": {**DISTRIBUTION},
    "gmp": {**SCHEDULE, "initial_density": 1.0, "scope": "layer"},
    "rigl": {**DISTRIBUTION, **SCHEDULE, "drop_fraction": 0.3, "drop_fraction_final": 0.0},
    "set": {**DISTRIBUTION, **SCHEDULE, "drop_fraction": 0.3, "drop_fraction_final": 0.0},
    "granet": {**DISTRIBUTION, **SCHEDULE, "initial_density": 0.5, "scope": "global",
               "drop_fraction": 0.5, "drop_fraction_final": 0.005, "grow_end_steps": None},
}
SCOPES = ("layer", "global")


@dataclasses.dataclass(frozen=True)
class Method:
  """One method's resolved settings (all steps are optimizer steps)."""
  name: str
  density: float  # Final density over the masked layers.
  init_density: float  # Density of the starting masks (1: dense start).
  distribution: str  # Layer-wise densities of the starting masks.
  first: str | None
  classifier: str | None
  classifier_density: float
  prunes: bool  # GMP's cubic schedule.
  scope: str
  begin: int
  end: int  # Last pruning step (gmp, granet) or last drop-and-grow step (rigl, set).
  frequency: int
  grow: str | None  # "gradient", "random" or None.
  grow_end: int
  drop_fraction: float
  drop_fraction_final: float


def resolve(name: str, args: dict) -> Method:
  """The settings of method `name` from a transform spec's arguments; raises
  ValueError naming an unknown method, argument or bad value."""
  if name not in METHODS:
    raise ValueError(f"Unknown sparsity method {name!r}; choose one of {sorted(METHODS)}.")
  allowed = {**COMMON, **METHODS[name]}
  unknown = sorted(set(args) - set(allowed))
  if unknown:
    raise ValueError(f"Sparsity method {name!r} takes no argument(s) {unknown}; it takes "
                     f"{sorted(allowed)}.")
  a = {**allowed, **args}
  if a["density"] is None or not 0.0 < a["density"] <= 1.0:
    raise ValueError(f"Sparsity needs 'density' in (0, 1] (the share of weights kept), got "
                     f"{a['density']}.")
  total = a["total_steps"]
  end = a.get("end_steps")
  if end is None and name != "static":
    if total is None:
      raise ValueError(f"Sparsity method {name!r} needs 'end_steps' (or the run's total steps).")
    end = int(round(0.75 * total)) if name in ("rigl", "set") else total
  if name != "static" and (a["frequency_steps"] < 1 or end <= a["begin_steps"]):
    raise ValueError(f"Sparsity method {name!r} needs frequency_steps >= 1 and end_steps > "
                     f"begin_steps; got {a['frequency_steps']}, {a['begin_steps']}, {end}.")
  if a.get("scope", "layer") not in SCOPES:
    raise ValueError(f"Sparsity 'scope' must be one of {SCOPES}, got {a['scope']!r}.")
  initial = a.get("initial_density", a["density"])
  if not a["density"] <= initial <= 1.0:
    raise ValueError(f"'initial_density' must lie in [density, 1], got {initial}.")
  grow = {"rigl": "gradient", "set": "random", "granet": "gradient"}.get(name)
  grow_end = end if name in ("rigl", "set") else (a.get("grow_end_steps") or total or end)
  return Method(
      name=name, density=float(a["density"]), init_density=float(initial),
      distribution=a.get("distribution", "uniform"), first=a.get("first"),
      classifier=a.get("classifier"), classifier_density=float(a.get("classifier_density", 1.0)),
      prunes=name in ("gmp", "granet"), scope=a.get("scope", "layer"),
      begin=int(a.get("begin_steps", 0)), end=int(end or 0),
      frequency=int(a.get("frequency_steps", 1)), grow=grow, grow_end=int(grow_end or 0),
      drop_fraction=float(a.get("drop_fraction", 0.0)),
      drop_fraction_final=float(a.get("drop_fraction_final", 0.0)))
