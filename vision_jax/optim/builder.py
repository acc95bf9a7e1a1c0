"""Optax optimizer from config: parameter-path groups, each with its own
optimizer spec, and a list of transforms around them (big_vision's
`optax.py` settings by parameter path, as optax.multi_transform).

  config.optimizer.name = "sgd"              # The default group: every parameter
  config.optimizer.momentum = 0.9            # no group below claims.
  config.optimizer.groups = (                # (regex over '/'-joined paths, spec); first match wins.
      (r".*subspaces$", {"name": "grassmann_sgd", "lr_factor": 1.0, "reorth_every": 5}),
      (r"backbone/(stem_.*|stage1_.*)", {"name": "frozen"}),
      (r"backbone/.*", {"name": "adamw", "lr_factor": 0.1}))
  config.optimizer.transforms = ({"name": "clip_by_global_norm", "max_norm": 1.0},)

A spec is an optimizer name of `vision_jax.optim.OPTIMIZERS`, `lr_factor`
(its lr = the schedule's x lr_factor) and its factory's arguments; the ones
it leaves out take the top-level optimizer's values where the factory has
them (momentum, b1, b2, eps, weight_decay, nesterov). Weight decay skips the
parameters matching `weight_decay_exclude` in every group. Transforms wrap
the optimizer built so far, in order (the first is innermost);
`grad_clip_norm` is the global-norm clip of the whole gradient before all.
"""
import inspect
import re
from typing import Any

import jax
import optax

from vision_jax import config as config_lib, optim
from vision_jax.errors import ConfigError
from vision_jax.sharding import path_name

DEFAULT_GROUP = "default"
# Top-level optimizer keys a group inherits when its factory takes them.
INHERITED = ("momentum", "nesterov", "b1", "b2", "eps", "weight_decay")
SPEC_KEYS = ("name", "lr_factor")  # Keys of a group spec besides its factory's arguments.


def decay_mask(params, exclude: str | None):
  """True for parameters to decay: those whose path does not match `exclude`."""
  pattern = re.compile(exclude) if exclude else None
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not (pattern and pattern.fullmatch(path_name(path))), params)


def sgd(learning_rate, *, momentum: float = 0.9, nesterov: bool = False,
        weight_decay: float = 0.0, decay_mask=None):
  """SGD with (Nesterov) momentum; weight decay is coupled L2, as in ResNet recipes."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay, decay_mask) if weight_decay else optax.identity(),
      optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov))


def adam(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0.0, decay_mask=None):
  """Adam (Kingma & Ba, arXiv:1412.6980) with coupled L2 decay, as torch.optim.Adam."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay, decay_mask) if weight_decay else optax.identity(),
      optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))


def adamw(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 0.0, decay_mask=None):
  """AdamW (Loshchilov & Hutter, arXiv:1711.05101): decoupled decay."""
  return optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                     mask=decay_mask)


def lamb(learning_rate, *, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6,
         weight_decay: float = 0.0, decay_mask=None):
  """LAMB (You et al., arXiv:1904.00962): layer-wise trust ratio over Adam."""
  return optax.lamb(learning_rate, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay,
                    mask=decay_mask)


def rmsprop(learning_rate, *, b2: float = 0.9, eps: float = 1.0, momentum: float = 0.0,
            weight_decay: float = 0.0, decay_mask=None):
  """RMSProp as TensorFlow's (Tieleman & Hinton 2012; the Inception papers'
  optimizer): v = b2 v + (1 - b2) g^2 from v_0 = 1, update lr g / sqrt(v + eps)
  (eps inside the root), optional heavy-ball momentum, coupled L2 decay."""
  return optax.chain(
      optax.add_decayed_weights(weight_decay, decay_mask) if weight_decay else optax.identity(),
      optax.rmsprop(learning_rate, decay=b2, eps=eps, initial_scale=1.0, eps_in_sqrt=True,
                    momentum=momentum or None))


def frozen(learning_rate):
  """No update at all (optax.set_to_zero): frozen parameters, e.g. mmdet's frozen_stages."""
  del learning_rate
  return optax.set_to_zero()


def make_schedule(schedule_cfg, peak: float, total_steps: int, warmup_steps: int,
                  cycle_steps: int | None = None) -> optax.Schedule:
  """The lr schedule; with `cycle_steps` (the config's schedule.cycle_steps /
  cycle_epochs, resolved), one schedule of that length repeated."""
  fn = optim.SCHEDULES.get(schedule_cfg.name)
  cycle = cycle_steps
  if cycle is not None and cycle < 1:
    raise ConfigError(f"The schedule's cycle must be >= 1 step, got {cycle}.")
  skip = ("name", "warmup_steps", "warmup_epochs", "cycle_steps", "cycle_epochs")
  base = fn(peak, cycle or total_steps, warmup_steps,
            **{k: v for k, v in schedule_cfg.items() if k not in skip})
  return base if cycle is None else (lambda count: base(count % cycle))


def _group_optimizer(spec: dict, opt_cfg, schedule: optax.Schedule, mask) -> optax.GradientTransformation:
  factory = optim.OPTIMIZERS.get(spec["name"])
  accepted = inspect.signature(factory).parameters
  args = {k: opt_cfg[k] for k in INHERITED if k in accepted}
  args.update({k: v for k, v in spec.items() if k not in SPEC_KEYS})
  factor = spec.get("lr_factor", 1.0)
  lr = schedule if factor == 1.0 else (lambda count: schedule(count) * factor)
  if "decay_mask" in accepted:
    args["decay_mask"] = mask
  return factory(lr, **args)


def group_labels(params, patterns: list[str]) -> Any:
  """Per leaf: "group<i>" of the first pattern its path fully matches, else DEFAULT_GROUP."""
  compiled = [re.compile(p) for p in patterns]

  def label(path, _):
    name = path_name(path)
    return next((f"group{i}" for i, r in enumerate(compiled) if r.fullmatch(name)), DEFAULT_GROUP)

  return jax.tree_util.tree_map_with_path(label, params)


def transform_arguments(spec: dict, factory, run: dict | None, where: str) -> dict:
  """A transform spec's arguments: `<x>_epochs` become `<x>_steps` with the
  run's steps per epoch, and the run facts (`total_steps`, `seed`) the
  factory takes fill in where the spec leaves them out."""
  run = dict(run or {})
  args = {}
  for key, value in spec.items():
    if key == "name":
      continue
    if key.endswith("_epochs") and value is not None:
      if run.get("steps_per_epoch") is None:
        raise ConfigError(f"'{where}.{key}' needs the run's steps per epoch; give "
                          f"'{key[:-7]}_steps' instead.")
      key, value = f"{key[:-7]}_steps", int(round(value * run["steps_per_epoch"]))
      if key in spec:
        raise ConfigError(f"Set only one of '{where}.{key}' and '{where}.{key[:-6]}_epochs'.")
    args[key] = value
  accepted = inspect.signature(factory).parameters
  takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
  for key in ("total_steps", "seed"):
    if key not in args and run.get(key) is not None and (key in accepted or takes_any):
      args[key] = run[key]
  return args


def make_optimizer(opt_cfg, schedule: optax.Schedule, params,
                   run: dict | None = None) -> optax.GradientTransformation:
  """The optimizer for `params` (a pytree or its shapes); `schedule` gives the lr;
  `run` holds the run's `total_steps`, `steps_per_epoch` and `seed` for the
  transforms that need them. Raises ConfigError for a group that claims no
  parameter or a spec its parameters cannot take (e.g. Grassmann SGD on a
  vector)."""
  config_lib.check_optimizer(opt_cfg)
  mask = lambda p: decay_mask(p, opt_cfg.weight_decay_exclude)
  top = {"name": opt_cfg.name}
  patterns = [g[0] for g in opt_cfg.groups]
  specs = {DEFAULT_GROUP: top, **{f"group{i}": config_lib.spec_dict(g[1]) for i, g in enumerate(opt_cfg.groups)}}
  labels = group_labels(params, patterns)
  used = set(jax.tree.leaves(labels))
  for i, pattern in enumerate(patterns):
    if f"group{i}" not in used:
      raise ConfigError(f"'optimizer.groups[{i}]' = {pattern!r} matches no parameter (an earlier "
                        "group may claim them); parameters look like "
                        f"{[path_name(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0][:3]]}.")
  optimizers = {}
  for group, spec in specs.items():
    if group in used:
      try:
        optimizers[group] = _group_optimizer(spec, opt_cfg, schedule, mask)
      except ValueError as e:
        where = "optimizer" if group == DEFAULT_GROUP else f"optimizer.groups[{group[5:]}]"
        raise ConfigError(f"'{where}' ({spec['name']}): {e}") from None
  if set(optimizers) == {DEFAULT_GROUP}:
    tx = optimizers[DEFAULT_GROUP]
  else:
    tx = optax.multi_transform(optimizers, lambda p: group_labels(p, patterns))
  if opt_cfg.grad_clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(opt_cfg.grad_clip_norm), tx)
  for i, spec in enumerate(opt_cfg.transforms):
    spec = config_lib.spec_dict(spec)
    factory = optim.TRANSFORMS.get(spec["name"])
    where = f"optimizer.transforms[{i}]"
    try:
      tx = factory(tx, **transform_arguments(spec, factory, run, where))
    except (TypeError, ValueError) as e:
      raise ConfigError(f"'{where}' ({spec['name']}): {e}") from None
  try:
    jax.eval_shape(tx.init, params)
  except ValueError as e:
    raise ConfigError(f"config.optimizer: {e}") from None
  return tx
