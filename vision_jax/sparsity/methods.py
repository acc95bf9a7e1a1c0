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

- `imp`: iterative magnitude pruning with rewinding (Frankle & Carbin, LTH,
  2019; Frankle et al. 2020 for rewinding to step k): every `cycle_steps`
  the `prune_fraction` smallest-|w| of the surviving weights (global) are
  removed until `density` is reached, the survivors are reset to their
  values at step `rewind_steps` (0: the initialisation) and the inner
  optimizer's state starts afresh (set `schedule.cycle_steps` to the same
  length so the lr schedule restarts with it).
- AP, activating while pruning (official code Martin1937/Activate-While-Pruning,
  `resnet_20.py`), with `ap_fraction` > 0 on `imp` or `gmp`: of each pruning
  step's removals, `ap_fraction` x the surviving count are instead the
  negative weights that moved least since the reference point (the cycle's
  rewound start for IMP, the previous pruning step for GMP): weights whose
  ReLU units they feed stay inactive (official: 2% of 20% per cycle).

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
    "gmp": {**SCHEDULE, "initial_density": 1.0, "scope": "layer", "ap_fraction": 0.0},
    "rigl": {**DISTRIBUTION, **SCHEDULE, "drop_fraction": 0.3, "drop_fraction_final": 0.0},
    "set": {**DISTRIBUTION, **SCHEDULE, "drop_fraction": 0.3, "drop_fraction_final": 0.0},
    "granet": {**DISTRIBUTION, **SCHEDULE, "initial_density": 0.5, "scope": "global",
               "drop_fraction": 0.5, "drop_fraction_final": 0.005, "grow_end_steps": None},
    "imp": {"cycle_steps": None, "prune_fraction": 0.2, "rewind_steps": 0, "ap_fraction": 0.0},
}
SCOPES = ("layer", "global")



@dataclasses.dataclass(frozen=True)
class Method:
  """One method's resolved settings (all steps are optimizer steps)."""
  name: str
  density: float  # Final density over the masked layers.
  init_density: float  # The schedule's starting density (GMP's 1 - s_i; GraNet's initial masks).
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
  cycle: int = 0  # imp: steps per pruning cycle (0: not imp).
  prune_fraction: float = 0.0  # imp: share of the survivors removed per cycle.
  rewind: int = 0  # imp: the step whose weights the survivors are reset to.
  ap_fraction: float = 0.0  # AP's share of the survivors per pruning step.

  @property
  def start_density(self) -> float:
    """Density of the masks at step 0: GMP and IMP start dense (GMP prunes to
    its initial sparsity by magnitude at `begin`), GraNet at `initial_density`."""
    return 1.0 if self.name in ("gmp", "imp") else self.init_density

  @property
  def uses_reference(self) -> bool:
    """Whether the state keeps a copy of the weights (IMP's rewind point, AP's reference)."""
    return bool(self.cycle) or self.ap_fraction > 0


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
  if name == "imp":
    return _resolve_imp(a)
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
      drop_fraction_final=float(a.get("drop_fraction_final", 0.0)),
      ap_fraction=_ap_fraction(a, a.get("scope", "layer")))


def _ap_fraction(a: dict, scope: str) -> float:
  ap = float(a.get("ap_fraction", 0.0))
  if not 0.0 <= ap < 1.0:
    raise ValueError(f"'ap_fraction' must lie in [0, 1), got {ap}.")
  if ap and scope != "global":
    raise ValueError("AP ('ap_fraction' > 0) ranks weights over all layers: use scope='global'.")
  return ap


def _resolve_imp(a: dict) -> Method:
  cycle, fraction, rewind = a["cycle_steps"], float(a["prune_fraction"]), int(a["rewind_steps"])
  if cycle is None or cycle < 1:
    raise ValueError(f"Sparsity method 'imp' needs 'cycle_steps' >= 1, got {cycle}.")
  if not 0.0 < fraction < 1.0 or not 0 <= rewind < cycle:
    raise ValueError(f"'imp' needs prune_fraction in (0, 1) and 0 <= rewind_steps < "
                     f"cycle_steps; got {fraction}, {rewind}.")
  ap = _ap_fraction(a, "global")
  if ap >= fraction:
    raise ValueError(f"'ap_fraction' ({ap}) must be below 'prune_fraction' ({fraction}).")
  return Method(name="imp", density=float(a["density"]), init_density=1.0,
                distribution="uniform", first=None, classifier=None, classifier_density=1.0,
                prunes=False, scope="global", begin=0, end=0, frequency=cycle, grow=None,
                grow_end=0, drop_fraction=0.0, drop_fraction_final=0.0, cycle=int(cycle),
                prune_fraction=fraction, rewind=rewind, ap_fraction=ap)
