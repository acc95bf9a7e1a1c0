"""Experiment configs: the base schema, string arguments, validation, durations.

Every experiment file starts from `base_config()` and sets what it changes.
`validate(config)` runs before any compute: an unknown or misspelled key, a
value of the wrong type, an unknown component name or a bad constructor
argument fails with a `ConfigError` naming the key and the nearest valid one.
"""
import ast
import dataclasses
import importlib.util
import inspect
import os
import re
from typing import Any, Callable

import ml_collections
from ml_collections import config_dict

from vision_jax import data, models, optim, registry, sharding, tasks
from vision_jax.errors import ConfigError

# Subtrees whose keys are constructor arguments of the component they name;
# they are checked against that constructor's signature instead of the schema.
OPEN_SUBTREES = ("model", "task", "evaluators", "teachers")
# Keys of an evaluator's subtree that choose its data (default: config.data's)
# and the task's predict function it reads (default: the evaluator's PREDICT).
EVALUATOR_DATA_KEYS = ("split", "pp", "batch_size", "predict")
# Keys of a teacher's subtree: the model (name + constructor arguments) and its weights.
TEACHER_KEYS = ("model", "model_args", "path")


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses "variant=r18,demo" into a ConfigDict over `defaults`.

  A bare name sets a boolean to True; values are Python literals or strings.
  Unknown names are errors: `defaults` lists every argument the file accepts.
  """
  out = ml_collections.ConfigDict(dict(defaults))
  for item in filter(None, (arg or "").split(",")):
    name, has_value, raw = (s.strip() for s in item.partition("="))
    if name not in defaults:
      raise ConfigError(f"Unknown config argument {name!r}.{registry.nearest(name, defaults)} "
                        f"Accepted: {', '.join(sorted(defaults))}.")
    if not has_value:
      value = True
    else:
      try:
        value = ast.literal_eval(raw)
      except (ValueError, SyntaxError):
        value = raw
    default = defaults[name]
    if default is not None and not isinstance(default, str) and isinstance(value, str):
      raise ConfigError(f"Config argument {name}={raw!r}: expected {type(default).__name__}.")
    out[name] = type(default)(value) if isinstance(default, (bool, int, float)) else value
  return out


def load(spec: str | os.PathLike) -> ml_collections.ConfigDict:
  """`get_config(arg)` of an experiment file, as `--config=` takes it:
  "configs/pvt_coco.py" or "configs/pvt_coco.py:variant=small"."""
  path, _, arg = str(spec).partition(":")
  if not os.path.isfile(path):
    raise ConfigError(f"No config file {path!r}.")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg or None)


def base_config() -> ml_collections.ConfigDict:
  """The schema: every key a config may set, with its default and type."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  # Training length: exactly one of the two.
  c.total_steps = config_dict.placeholder(int)
  c.total_epochs = config_dict.placeholder(float)
  c.log_every_steps = 50
  c.eval_every_steps = config_dict.placeholder(int)  # None: only at the end.
  c.checkpoint_every_steps = 1000
  c.keep_checkpoints = 3
  c.compute_dtype = "float32"  # "bfloat16": bf16 activations, fp32 params.
  # Resume order: newest checkpoint in workdir -> resume -> init_from -> scratch.
  c.resume = config_dict.placeholder(str)  # A checkpoint step directory.
  c.init_from = ml_collections.ConfigDict()
  # A checkpoint step directory, or a reference weights file (.pth/.safetensors).
  c.init_from.path = config_dict.placeholder(str)
  c.init_from.subtree = "params"  # '/'-separated path into the saved train state.
  c.init_from.target = config_dict.placeholder(str)  # Where it goes; default: same path.
  # Every target leaf filled and every source leaf used (but a converter's droppable
  # classifier head); False: load what matches and log the rest.
  c.init_from.strict = True

  c.mesh = ml_collections.ConfigDict()
  # Axes in this order; one size may be -1 (the devices the others leave).
  # Batches are split over data x fsdp; parameters over whatever the rules say.
  c.mesh.data = -1  # Pure data parallelism: parameters replicated.
  c.mesh.fsdp = 1  # Data parallelism with parameters sharded by the rules (ZeRO-3).
  c.mesh.model = 1  # Tensor parallelism: dimensions the rules name "model".
  # (regex over the '/'-joined path of each train-state leaf, spec); first match
  # wins. spec: PartitionSpec entries for the leading dimensions, e.g.
  # (None, "model"); `...` then entries for the trailing ones, e.g. (..., "model")
  # (the last dimension of any rank); or the name of one mesh axis, e.g. "fsdp":
  # the leaf's largest dimension that axis divides. A spec naming more
  # dimensions than a leaf has is an error. Left at this default, the model
  # families' own rules come first (tensor parallelism over "model": e.g. PVT's
  # Megatron-style attention and MLP splits; models/backbones/<family>.py).
  c.partition_rules = ((".*", ()),)

  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = False  # True: jax.distributed.initialize (auto-detects pods).
  c.distributed.coordinator_address = config_dict.placeholder(str)
  c.distributed.num_processes = config_dict.placeholder(int)
  c.distributed.process_id = config_dict.placeholder(int)
  # Comma-separated ids of the local devices this process drives, e.g. "0,1,2,3";
  # None: all visible ones, except under SLURM, where JAX then takes only the
  # device numbered SLURM_LOCALID (one process per device).
  c.distributed.local_device_ids = config_dict.placeholder(str)

  c.data = ml_collections.ConfigDict()
  c.data.name = "sklearn_digits"  # A TFDS name or an embedded dataset.
  c.data.data_dir = config_dict.placeholder(str)  # None: TFDS default.
  c.data.train_split = "train"
  c.data.eval_split = "test"
  c.data.pp_train = "decode|onehot(10)"
  c.data.pp_eval = "decode|onehot(10)"
  c.data.batch_size = 128  # Global, across all processes.
  c.data.eval_batch_size = 256
  c.data.num_workers = 0  # Grain worker processes per host; 0: in-process.
  c.data.prefetch = 2  # Batches buffered per worker.
  c.data.skip_decoding = ("image",)  # Features decoded by the `decode` pp op.
  # Detection: train only on images with an annotation (mmdetection's filter_empty_gt);
  # evaluation always keeps every image.
  c.data.train_drop_empty = False
  # Detection: aspect-ratio groups' canvases ((H, W), ...), e.g. ((800, 1344), (1344, 800));
  # each global batch is one group's, padded by the pp op `pad_to_canvas`. (): no groups.
  c.data.canvases = ()

  c.task = ml_collections.ConfigDict({"name": "classification"})
  # Values task and model share (num_classes) are set here only.
  c.model = ml_collections.ConfigDict({"name": "resnet18"})
  # name -> {model: a model name, model_args: its arguments, path: a checkpoint step
  # directory or a weights file}: frozen models a task's loss may run (distillation).
  c.teachers = ml_collections.ConfigDict()
  # name -> {kind: evaluator name, constructor arguments}; empty: task defaults.
  c.evaluators = ml_collections.ConfigDict()

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1  # Peak, for the global batch.
  c.optimizer.momentum = 0.9  # sgd, rmsprop
  c.optimizer.nesterov = False  # sgd
  c.optimizer.b1 = 0.9  # adam, adamw, lamb
  c.optimizer.b2 = 0.999  # adamw, lamb; rmsprop: the decay of its squared-gradient average
  c.optimizer.eps = 1e-8  # adam, adamw, lamb, rmsprop (inside the square root)
  c.optimizer.weight_decay = 0.0
  # Parameters whose '/'-joined path matches are not decayed.
  c.optimizer.weight_decay_exclude = r".*(bias|scale)$"
  c.optimizer.grad_clip_norm = config_dict.placeholder(float)  # Of the whole gradient.
  c.optimizer.accum_steps = 1  # Micro-batches per step (gradient accumulation).
  # (regex over '/'-joined parameter paths, {"name": optimizer, "lr_factor": x, its
  # arguments}); first match wins; the rest use the optimizer above. E.g.
  # (r".*subspaces$", {"name": "grassmann_sgd"}), (r"backbone/stem_.*", {"name": "frozen"}).
  c.optimizer.groups = ()
  # ({"name": transform, its arguments}, ...): each wraps the optimizer so far, in order.
  c.optimizer.transforms = ()

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = "cosine"
  c.schedule.warmup_steps = config_dict.placeholder(int)
  c.schedule.warmup_epochs = config_dict.placeholder(float)
  c.schedule.warmup_start_factor = 0.0  # First warmup lr / peak lr (mmdet warmup_ratio).
  c.schedule.end_factor = 0.0  # cosine, poly: final lr / peak lr.
  c.schedule.power = 1.0  # poly: exponent of the decay (mmseg: 0.9).
  c.schedule.boundaries = (0.5, 0.75)  # step: fractions of training.
  c.schedule.decay_factor = 0.1  # step: lr multiplier at each boundary.
  # Restart the schedule (warmup included) every this many steps, each cycle
  # a whole schedule of that length (e.g. iterative pruning's retraining cycles).
  c.schedule.cycle_steps = config_dict.placeholder(int)
  c.schedule.cycle_epochs = config_dict.placeholder(float)
  return c



def short_demo_run(c: ml_collections.ConfigDict, learning_rate: float, total_steps: int = 1500,
                   eval_every_steps: int = 500) -> None:
  """The embedded demos' short from-scratch run, set on `c`: the peak
  `learning_rate` after 100 warmup steps, the whole gradient clipped at norm
  1, logs every 50 steps, evaluation and checkpoints every `eval_every_steps`."""
  c.optimizer.learning_rate = learning_rate
  c.optimizer.grad_clip_norm = 1.0
  c.schedule.warmup_steps = 100
  c.total_steps = total_steps
  c.log_every_steps = 50
  c.eval_every_steps = c.checkpoint_every_steps = eval_every_steps

def _type_ok(value: Any, default: Any, field_type: type | None) -> bool:
  expected = field_type or (type(default) if default is not None else None)
  if expected is None or value is None:
    return True
  if expected is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if expected is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if expected in (tuple, list):
    return isinstance(value, (tuple, list))
  return isinstance(value, expected)


def _check_schema(node, schema, prefix: str) -> None:
  for key in node.keys():
    path = f"{prefix}{key}"
    if key not in schema:
      raise ConfigError(f"Unknown config key {path!r}."
                        f"{registry.nearest(prefix + key, [prefix + k for k in schema])}")
    value, default = node[key], schema[key]
    if isinstance(default, ml_collections.ConfigDict):
      if path in OPEN_SUBTREES:
        continue
      if not isinstance(value, (ml_collections.ConfigDict, dict)):
        raise ConfigError(f"Config key {path!r} must be a group of keys, got {value!r}.")
      _check_schema(value, default, path + ".")
    else:
      field_type = schema.get_type(key)
      if field_type is type(None):
        field_type = None
      if not _type_ok(value, default, field_type):
        want = (field_type or type(default)).__name__
        raise ConfigError(f"Config key {path!r} must be {want}, got {type(value).__name__} {value!r}.")


def check_arguments(fn: Callable, kwargs: dict, what: str, skip=(), extra=()) -> None:
  """Raises ConfigError if `fn` (or `extra`) does not accept every key of `kwargs`."""
  params = inspect.signature(fn).parameters
  if any(p.kind == p.VAR_KEYWORD for p in params.values()):
    return
  valid = [n for n in params if n not in skip and n not in ("parent", "name", "self")]
  valid += list(extra)
  for key in kwargs:
    if key not in valid:
      raise ConfigError(f"Unknown config key '{what}.{key}'.{registry.nearest(key, valid)} "
                        f"Valid: {', '.join(valid)}.")


def component_kwargs(node: ml_collections.ConfigDict, drop=("name",)) -> dict:
  """The constructor arguments of a named component's subtree."""
  return {k: (v.to_dict() if isinstance(v, ml_collections.ConfigDict) else v)
          for k, v in node.items() if k not in drop}


def _check_duration(node, name: str, prefix: str, required: bool) -> None:
  steps, epochs = node.get(f"{name}_steps"), node.get(f"{name}_epochs")
  if steps is not None and epochs is not None:
    raise ConfigError(f"Set only one of '{prefix}{name}_steps' and '{prefix}{name}_epochs'.")
  if required and steps is None and epochs is None:
    raise ConfigError(f"Set one of '{prefix}{name}_steps' or '{prefix}{name}_epochs'.")
  for value, suffix in ((steps, "steps"), (epochs, "epochs")):
    if value is not None and value < 0:
      raise ConfigError(f"'{prefix}{name}_{suffix}' must be >= 0, got {value}.")


def resolve_steps(node, name: str, steps_per_epoch: int) -> int | None:
  """`{name}_steps`, or `{name}_epochs` converted with `steps_per_epoch`."""
  steps, epochs = node.get(f"{name}_steps"), node.get(f"{name}_epochs")
  if steps is not None:
    return int(steps)
  if epochs is not None:
    return int(round(epochs * steps_per_epoch))
  return None


def _check_path_rule(rule, where: str, what: str) -> None:
  """A (regex over '/'-joined paths, `what`) pair with a regex that compiles."""
  if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
    raise ConfigError(f"{where}: expected (regex, {what}).")
  try:
    re.compile(rule[0])
  except re.error as e:
    raise ConfigError(f"{where}: bad regex ({e}).") from None


def spec_dict(spec) -> Any:
  """A {name, arguments} entry as a plain dict."""
  return spec.to_dict() if isinstance(spec, ml_collections.ConfigDict) else spec


def _check_spec(spec, where: str, table, skip=(), extra=()) -> None:
  """A {"name": ..., arguments} entry: a known name, arguments its factory takes."""
  spec = spec_dict(spec)
  if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
    raise ConfigError(f"'{where}': expected a dict with a 'name', got {spec!r}.")
  factory = _lookup(table, spec["name"], f"{where}.name")
  args = {k: v for k, v in spec.items() if k != "name"}
  check_arguments(factory, args, where, skip, extra)
  validate = getattr(factory, "validate", None)  # Factories taking **args check them here.
  if validate is not None:
    try:
      validate(args)
    except ValueError as e:
      raise ConfigError(f"'{where}' ({spec['name']}): {e}") from None


def check_optimizer(opt_cfg) -> None:
  """`optimizer.groups` and `optimizer.transforms`, before any compute."""
  for i, group in enumerate(opt_cfg.groups):
    where = f"optimizer.groups[{i}]"
    _check_path_rule(group, f"'{where}' = {group!r}", "optimizer spec")
    _check_spec(group[1], where, optim.OPTIMIZERS, skip=("learning_rate", "decay_mask"),
                extra=("lr_factor",))
  for i, spec in enumerate(opt_cfg.transforms):
    _check_spec(spec, f"optimizer.transforms[{i}]", optim.TRANSFORMS, skip=("inner",))


def _check_partition_rules(rules, axes: tuple[str, ...]) -> None:
  """Each rule is (regex, spec) with spec a tuple of mesh axes/None or one axis name."""
  for i, rule in enumerate(rules):
    where = f"'partition_rules[{i}]' = {rule!r}"
    _check_path_rule(rule, where, "spec")
    spec = rule[1]
    entries = [spec] if isinstance(spec, str) else list(spec) if isinstance(spec, (tuple, list)) else None
    if entries is None:
      raise ConfigError(f"{where}: spec must be a tuple of mesh axes or one axis name.")
    if entries and isinstance(spec, (tuple, list)) and sharding.is_ellipsis(entries[0]):
      entries = entries[1:]  # (..., a, b): a and b name the trailing dimensions.
    for entry in entries:
      if sharding.is_ellipsis(entry):
        raise ConfigError(f"{where}: '...' may only be the first entry of a spec.")
      for axis in (entry if isinstance(entry, (tuple, list)) else (entry,)):
        if axis is not None and axis not in axes:
          raise ConfigError(f"{where}: unknown mesh axis {axis!r}.{registry.nearest(str(axis), axes)} "
                            f"Axes: {', '.join(axes)}.")


def _lookup(table, name, key: str):
  try:
    return table.get(name)
  except KeyError as e:
    raise ConfigError(f"Config key {key!r}: {e.args[0]}") from None


def check_model(name: str, kwargs: dict, path: str) -> None:
  """A model name and its arguments; for an assembled model also each part's
  name (`<part>`) and arguments (`<part>_args`), recursively."""
  from vision_jax.models import features  # pylint: disable=import-outside-toplevel
  ctor = _lookup(models.MODELS, name, f"{path}.name" if path == "model" else path)
  check_arguments(ctor, kwargs, path if path == "model" else f"{path}_args")
  for part in features.submodels(ctor):
    field = next(f for f in dataclasses.fields(getattr(ctor, "func", ctor)) if f.name == part)
    part_name = kwargs.get(part, getattr(ctor, "keywords", {}).get(part, field.default))
    part_path = f"{path}.{part}" if path == "model" else f"{path}_args.{part}"
    check_model(part_name, dict(kwargs.get(f"{part}_args") or {}), part_path)


def _check_task(config) -> None:
  ctor = _lookup(tasks.TASKS, config.task.get("name"), "task.name")
  kwargs = component_kwargs(config.task)
  for key in ctor.SHARED_WITH_MODEL:
    if key in kwargs:
      raise ConfigError(f"'task.{key}' is taken from 'model.{key}': set it there only.")
  check_arguments(ctor, kwargs, "task")


def _check_evaluators(config) -> None:
  from vision_jax.data import transforms  # pylint: disable=import-outside-toplevel
  for name, node in config.evaluators.items():
    path = f"evaluators.{name}"
    if "kind" not in node:
      raise ConfigError(f"Config key '{path}.kind' is missing: name an evaluator "
                        f"({', '.join(tasks.EVALUATORS.names())}).")
    ctor = _lookup(tasks.EVALUATORS, node.kind, f"{path}.kind")
    check_arguments(ctor, component_kwargs(node, drop=("kind",)), path,
                    skip=("predict_fn", "data", "workdir"), extra=EVALUATOR_DATA_KEYS)
    if node.get("pp"):
      transforms.parse(node.pp, where=f"{path}.pp")


def _check_canvases(config) -> None:
  """data.canvases and the pp op `pad_to_canvas` come together."""
  from vision_jax.data import grouping, transforms  # pylint: disable=import-outside-toplevel
  canvases = tuple(config.data.canvases)
  if canvases:
    try:
      grouping.check_canvases(canvases)
    except ValueError as e:
      raise ConfigError(f"'data.canvases': {e}") from None
  pps = {"data.pp_train": config.data.pp_train, "data.pp_eval": config.data.pp_eval,
         **{f"evaluators.{n}.pp": node.pp for n, node in config.evaluators.items()
            if node.get("pp")}}
  for key, pp in pps.items():
    padded = "pad_to_canvas" in transforms.op_names(pp)
    if canvases and not padded:
      raise ConfigError(f"'data.canvases' groups images by aspect ratio, but {key!r} does not "
                        f"pad them with pad_to_canvas (it reads {pp!r}).")
    if padded and not canvases:
      raise ConfigError(f"{key!r} pads with pad_to_canvas, which needs 'data.canvases' (the "
                        f"aspect-ratio groups' canvases, e.g. ((800, 1344), (1344, 800))).")


def _check_teachers(config) -> None:
  for name, node in config.teachers.items():
    path = f"teachers.{name}"
    for key in node:
      if key not in TEACHER_KEYS:
        raise ConfigError(f"Unknown config key '{path}.{key}'.{registry.nearest(key, TEACHER_KEYS)} "
                          f"Valid: {', '.join(TEACHER_KEYS)}.")
    if not isinstance(node.get("path"), str):
      raise ConfigError(f"'{path}.path' must name a checkpoint step directory or a weights file.")
    check_model(node.get("model"), dict(node.get("model_args") or {}), f"{path}.model")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for anything in `config` that cannot run."""
  from vision_jax.data import transforms  # Light: numpy and PIL only.
  _check_schema(config, base_config(), "")
  _check_duration(config, "total", "", required=True)
  _check_duration(config.schedule, "warmup", "schedule.", required=False)
  _check_duration(config.schedule, "cycle", "schedule.", required=False)
  for key in ("log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    if config[key] < 1:
      raise ConfigError(f"{key!r} must be >= 1, got {config[key]}.")
  if config.data.batch_size % config.optimizer.accum_steps:
    raise ConfigError(f"'data.batch_size' ({config.data.batch_size}) must be divisible by "
                      f"'optimizer.accum_steps' ({config.optimizer.accum_steps}).")
  check_model(config.model.get("name"), component_kwargs(config.model), "model")
  _check_task(config)
  for table, path in ((optim.OPTIMIZERS, "optimizer"), (optim.SCHEDULES, "schedule")):
    if config[path].name not in table:
      raise ConfigError(f"Config key '{path}.name': unknown {table.kind} {config[path].name!r}."
                        f"{registry.nearest(config[path].name, table.names())}")
  check_optimizer(config.optimizer)
  _check_evaluators(config)
  _check_teachers(config)
  for key in ("pp_train", "pp_eval"):
    transforms.parse(config.data[key], where=f"data.{key}")
  _check_canvases(config)
  _check_partition_rules(config.partition_rules, tuple(config.mesh.keys()))
  ids = config.distributed.local_device_ids
  if ids is not None and not re.fullmatch(r"\d+(,\d+)*", ids):
    raise ConfigError(f"'distributed.local_device_ids' must be comma-separated device ids "
                      f"such as '0,1,2,3', got {ids!r}.")
  if config.compute_dtype not in ("float32", "bfloat16"):
    raise ConfigError(f"'compute_dtype' must be 'float32' or 'bfloat16', got {config.compute_dtype!r}.")
