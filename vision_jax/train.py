"""The one trainer for every task: config -> mesh -> data -> model/optimizer ->
sharded init -> restore -> jitted steps -> metrics/evaluators -> checkpoints.

`run(config, workdir)` trains (or, with mode="eval", evaluates the newest
checkpoint) and returns the final metrics; main.py, tests and notebooks all
call it. Same code on one CPU, many devices or many hosts: every array is a
global `jax.Array` laid out by the mesh, and every step is one `jax.jit`.
"""
import dataclasses
import json
import os
import signal
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from vision_jax import checkpoint, config as config_lib, files, init_from
from vision_jax import metrics as metrics_lib, models, sharding, steps, tasks
from vision_jax.data import pipeline
from vision_jax.evaluators import pictures as pictures_lib
from vision_jax.models import features
from vision_jax.optim import builder
from vision_jax.sparsity import accounting
from vision_jax.tasks import base as tasks_base

EVAL_RESULTS_FILE = "eval_results.json"


class StopSignal:
  """Turns SIGTERM (preemption, `kill`) into a request to save and exit."""

  def __init__(self):
    self.requested = False
    self._previous = None
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # Not the main thread (e.g. some notebook kernels).
      self._previous = None

  def _handle(self, signum, frame):
    del signum, frame
    metrics_lib.log("SIGTERM received: saving a checkpoint and exiting.")
    self.requested = True

  def should_stop(self, step: int, sync_every: int) -> bool:
    """Whether to stop after `step`. One process checks every step; several
    agree (an all-gather) every `sync_every` steps so they stop together."""
    if jax.process_count() == 1:
      return self.requested
    if step % sync_every:
      return False
    return bool(multihost_utils.process_allgather(np.int32(self.requested)).max())

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


@dataclasses.dataclass
class Setup:
  """Everything built from a config before the first step."""
  config: ml_collections.ConfigDict
  mesh: jax.sharding.Mesh
  model: Any
  task: Any
  train_data: pipeline.TrainData | None  # None in eval mode.
  evaluators: dict[str, Any]
  total_steps: int
  tx: Any
  schedule: Any
  init_fn: Any
  state_shardings: Any
  teachers: dict[str, tasks_base.Teacher]  # Frozen models of config.teachers, loaded.
  inputs: tuple  # The model's inputs for one example (shapes and dtypes).

  def close(self) -> None:
    if self.train_data is not None:
      self.train_data.close()


def data_spec(config, split: str, pp: str, batch: int, where: str,
              drop_empty: bool = False) -> pipeline.DataSpec:
  d = config.data
  return pipeline.DataSpec(name=d.name, split=split, pp=pp, global_batch=batch,
                           data_dir=d.data_dir, skip_decoding=tuple(d.skip_decoding),
                           num_workers=d.num_workers, prefetch=d.prefetch, seed=config.seed,
                           where=where, drop_empty=drop_empty,
                           canvases=tuple(tuple(c) for c in d.canvases))


def _check_batch(batch: int, mesh, key: str) -> None:
  shards = sharding.batch_shards(mesh)
  if batch % shards or batch % jax.process_count():
    raise config_lib.ConfigError(
        f"{key!r}={batch} must be divisible by the {shards} data shards of the mesh "
        f"and by the {jax.process_count()} processes.")


def build_model(config, node=None):
  """The model of `config.model` (or of another model node: name + arguments)."""
  node = config.model if node is None else node
  kwargs = config_lib.component_kwargs(node)
  if config.compute_dtype == "bfloat16":
    kwargs.setdefault("dtype", jnp.bfloat16)
  return models.MODELS.get(node.name)(**kwargs)


def build_task(config, model):
  """The task of `config.task`, given the values it shares with `model` (set
  once, in config.model), and checked against the model before compute."""
  ctor = tasks.TASKS.get(config.task.name)
  kwargs = config_lib.component_kwargs(config.task)
  kwargs.update({k: getattr(model, k) for k in ctor.SHARED_WITH_MODEL})
  task = ctor(**kwargs)
  try:
    task.check(model)
  except ValueError as e:
    raise config_lib.ConfigError(f"config.task ({config.task.name}) and config.model "
                                 f"({config.model.name}) disagree: {e}") from None
  return task


def example_inputs(task, template: dict) -> tuple:
  """The model's inputs for one example of `template` (shapes and dtypes)."""
  one = {k: np.asarray(v)[None] for k, v in template.items()}
  return tuple(jax.ShapeDtypeStruct(np.shape(x)[1:], np.asarray(x).dtype)
               for x in task.model_inputs(one))


def setup(config: ml_collections.ConfigDict, workdir: str | None = None,
          mode: str = "train") -> Setup:
  """Validates `config` and builds mesh, data, model, optimizer and evaluators
  (no compute). Every split the run will read is opened and one record of it
  preprocessed here: the train split (not in eval mode) and every evaluator's."""
  if mode not in ("train", "eval"):
    raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
  config_lib.validate(config)
  d = config.distributed
  sharding.initialize_distributed(d.enabled, d.coordinator_address, d.num_processes, d.process_id,
                                  d.local_device_ids)
  mesh = sharding.make_mesh(dict(config.mesh))
  _check_batch(config.data.batch_size // config.optimizer.accum_steps, mesh,
               "data.batch_size / optimizer.accum_steps")
  _check_batch(config.data.eval_batch_size, mesh, "data.eval_batch_size")
  model = build_model(config)
  task = build_task(config, model)
  train_data = None
  if mode == "train":
    train_data = pipeline.TrainData(data_spec(
        config, config.data.train_split, config.data.pp_train, config.data.batch_size,
        "data.pp_train", drop_empty=config.data.train_drop_empty))
  try:
    return _build(config, mesh, model, task, train_data, workdir, mode)
  except Exception:
    if train_data is not None:
      train_data.close()
    raise


def _build(config, mesh, model, task, train_data, workdir, mode) -> Setup:
  """Evaluators, schedule, optimizer, sharded init and teachers (setup's second half)."""
  evaluators = _evaluators(config, mesh, model, task, workdir)
  templates = {name: evaluator.check() for name, evaluator in evaluators.items()}
  if train_data is not None:
    per_epoch, template = train_data.steps_per_epoch, train_data.template
  elif templates:
    # Eval restores a state whose structure does not depend on the schedule's
    # values or on the input size, so neither needs the train split.
    per_epoch, template = 1, next(iter(templates.values()))
  else:
    raise config_lib.ConfigError("--mode=eval needs at least one evaluator (config.evaluators).")
  inputs = example_inputs(task, template)
  total = config_lib.resolve_steps(config, "total", per_epoch)
  warmup = config_lib.resolve_steps(config.schedule, "warmup", per_epoch) or 0
  cycle = config_lib.resolve_steps(config.schedule, "cycle", per_epoch)
  schedule = builder.make_schedule(config.schedule, config.optimizer.learning_rate, total, warmup,
                                   cycle)
  param_shapes = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), *[jnp.zeros((1, *x.shape), x.dtype) for x in inputs],
      train=False)["params"])
  tx = builder.make_optimizer(config.optimizer, schedule, param_shapes, {
      "total_steps": total, "steps_per_epoch": per_epoch, "seed": config.seed})
  init_fn = steps.make_init(model, tx, inputs, config.seed)
  state_shardings = sharding.tree_shardings(jax.eval_shape(init_fn), mesh,
                                            partition_rules(config, model))
  teachers = {} if mode == "eval" else {  # Eval runs no loss: no teacher to load.
      name: init_from.load_teacher(build_model(config, node.model_node), node.path, inputs,
                                   sharding.replicated(mesh), name)
      for name, node in _teacher_nodes(config).items()}
  return Setup(config, mesh, model, task, train_data, evaluators, total, tx, schedule, init_fn,
               state_shardings, teachers, inputs)


def partition_rules(config, model) -> list[tuple]:
  """`config.partition_rules`; left at the default (replicate everything), the
  model families' own rules first (`models.features.partition_rules`)."""
  rules = [tuple(r) for r in config.partition_rules]
  if rules == [tuple(r) for r in config_lib.base_config().partition_rules]:
    rules = list(features.partition_rules(model)) + rules
  return rules


@dataclasses.dataclass(frozen=True)
class _TeacherNode:
  model_node: ml_collections.ConfigDict  # name + constructor arguments.
  path: str


def _teacher_nodes(config) -> dict[str, _TeacherNode]:
  out = {}
  for name, node in config.teachers.items():
    model_node = ml_collections.ConfigDict({"name": node.model, **dict(node.get("model_args") or {})})
    out[name] = _TeacherNode(model_node, node.path)
  return out


def init_state(s: Setup) -> dict:
  """A fresh train state, created already sharded (never whole on one host)."""
  return jax.jit(s.init_fn, out_shardings=s.state_shardings)()


def compile_train_step(s: Setup):
  """The jitted train step: state donated, shardings the same in and out."""
  teacher_models = {name: t.model for name, t in s.teachers.items()}
  teacher_variables = {name: t.variables for name, t in s.teachers.items()}
  step = jax.jit(steps.make_train_step(s.model, s.task, s.tx, s.schedule,
                                       s.config.optimizer.accum_steps, teacher_models),
                 donate_argnums=0,
                 in_shardings=(s.state_shardings, sharding.batch_sharding(s.mesh),
                               sharding.replicated(s.mesh)),
                 out_shardings=(s.state_shardings, sharding.replicated(s.mesh)))
  return lambda state, batch: step(state, batch, teacher_variables)


def _restore_or_init(s: Setup, ckpt: checkpoint.Checkpointer) -> tuple[dict, dict | None]:
  """Resume order: newest in workdir -> config.resume -> config.init_from -> scratch."""
  abstract = checkpoint.abstract_tree(jax.eval_shape(s.init_fn), s.state_shardings)
  newest = ckpt.restore_newest(abstract)
  if newest is not None:
    state, data_state, step = newest
    metrics_lib.log(f"Resumed from {ckpt.directory} at step {step}.")
    return state, data_state
  if s.config.resume:
    state, data_state = checkpoint.restore_step_dir(s.config.resume, abstract)
    metrics_lib.log(f"Resumed from config.resume={s.config.resume} at step {int(state['step'])}.")
    return state, data_state
  state = init_state(s)
  if s.config.init_from.path:
    src = s.config.init_from
    state, report = init_from.load_partial(src.path, src.subtree, src.target, state, src.strict,
                                           model=s.model)
    metrics_lib.log(f"init_from {src.path} [{src.subtree}] -> [{src.target or src.subtree}] "
                    f"({'strict' if src.strict else 'not strict'}): {init_from.summary(report)}.")
  return state, None


def _evaluators(c, mesh, model, task, workdir: str | None) -> dict[str, Any]:
  """The configured evaluators (or the task's defaults), each given the predict
  function it names and what else it declares it needs (`evaluators.base`)."""
  out, predictor = {}, Predictor(model, task, mesh)
  specs = c.evaluators.to_dict() if c.evaluators else task.default_evaluators()
  for name, node in specs.items():
    node = dict(node)
    data = data_spec(c, node.pop("split", c.data.eval_split), node.pop("pp", c.data.pp_eval),
                     node.pop("batch_size", c.data.eval_batch_size), f"evaluators.{name}.pp")
    _check_batch(data.global_batch, mesh, f"evaluators.{name}.batch_size")
    ctor = tasks.EVALUATORS.get(node.pop("kind"))
    predict_name = node.pop("predict", ctor.PREDICT)
    if predict_name not in task.predict_fns():
      raise config_lib.ConfigError(
          f"evaluators.{name} reads the task's {predict_name!r} predictions; the task "
          f"{c.task.name!r} has {sorted(task.predict_fns())} (set evaluators.{name}.predict).")
    if ctor.NEEDS_WORKDIR:
      node["workdir"] = workdir
    out[name] = ctor(predictor.function(predict_name), data=data, **node)
  return out


class Predictor:
  """The evaluators' predict functions: the task's predict function `name`
  jitted over the global batch, results replicated and copied to the host;
  one program per (name, reduce), shared by all evaluators."""

  def __init__(self, model, task, mesh):
    self.model, self.task, self.mesh = model, task, mesh
    self._compiled = {}

  def function(self, name: str = "predict"):
    """`predict_fn(variables, local_batch, reduce=None)` of the evaluator protocol."""

    def predict_fn(variables, local_batch, reduce=None):
      key = (name, reduce)
      if key not in self._compiled:
        self._compiled[key] = jax.jit(steps.make_predict(self.model, self.task, name, reduce),
                                      out_shardings=sharding.replicated(self.mesh))
      batch = sharding.global_batch(local_batch, self.mesh)
      return jax.device_get(self._compiled[key](variables, batch))

    return predict_fn


def _evaluate(evaluators: dict, state: dict, writer: metrics_lib.MetricWriter,
              step: int) -> dict[str, float]:
  """Runs every evaluator; writes its scalars and, if it draws any, its pictures."""
  variables = steps.variables_of(state)
  results = {}
  for name, evaluator in evaluators.items():
    results.update({f"{name}/{k}": v for k, v in evaluator.run(variables).items()})
    pictures = evaluator.pictures()
    if pictures:
      writer.write_images(step, {f"{name}/{k}": v for k, v in
                                 pictures_lib.tile_groups(pictures).items()})
  writer.write(step, results)
  return results


def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Restores the newest checkpoint in `workdir` and runs the evaluators (the
  train split is not opened)."""
  s = setup(config, workdir, mode="eval")
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  writer = metrics_lib.MetricWriter(workdir, scalars=False)
  try:
    abstract = checkpoint.abstract_tree(jax.eval_shape(s.init_fn), s.state_shardings)
    newest = ckpt.restore_newest(abstract)
    if newest is None:
      raise FileNotFoundError(f"No checkpoint to evaluate in {ckpt.directory}.")
    state, _, step = newest
    results = _evaluate(s.evaluators, state, writer, step)
  finally:
    writer.close()
    ckpt.close()
    s.close()
  metrics_lib.log(f"Eval of step {step}: {results}")
  if jax.process_index() == 0:
    files.write_atomic(os.path.join(workdir, EVAL_RESULTS_FILE),
                       json.dumps({"step": step, **results}, indent=1))
  return {"step": step, **results}


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = "train") -> dict[str, float]:
  """Trains per `config` in `workdir` (resuming if possible); returns final metrics."""
  if mode == "eval":
    return evaluate(config, workdir)
  if mode != "train":
    raise ValueError(f"mode must be 'train' or 'eval', got {mode!r}.")
  s = setup(config, workdir)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  writer = metrics_lib.MetricWriter(workdir)
  stop = StopSignal()
  try:
    return _loop(s, ckpt, writer, stop, workdir)
  finally:
    stop.close()
    ckpt.close()
    writer.close()
    s.close()


def _log_sparsity(s: Setup, state: dict, workdir: str) -> None:
  """Per-layer parameters, densities and FLOPs of a sparse run (at its start
  and end), logged and written to `sparsity.json`, the latest kept (no-op
  without sparsity masks)."""
  rows = accounting.state_table(s.model, s.inputs, state)
  if rows is None:
    return
  metrics_lib.log(f"Sparse model at step {int(state['step'])}:\n{accounting.format_table(rows)}")
  if jax.process_index() == 0:
    files.write_atomic(os.path.join(workdir, "sparsity.json"),
                       json.dumps([{**r, "shape": list(r["shape"])} for r in rows], indent=1))


def _checked(pending: list[dict], step: int) -> list[dict]:
  """Host copies of the metrics of steps (step - len(pending), step]; raises at
  the first non-finite loss, naming its step."""
  history = jax.device_get(pending)
  metrics_lib.first_nonfinite([(step - len(history) + 1 + i, float(h["train/loss"]))
                               for i, h in enumerate(history)])
  return history


def _loop(s: Setup, ckpt, writer, stop: StopSignal, workdir: str) -> dict[str, float]:
  c = s.config
  state, data_state = _restore_or_init(s, ckpt)
  if data_state is not None:
    s.train_data.set_state(data_state)
  step = int(state["step"])
  if jax.process_index() == 0:
    files.write_atomic(os.path.join(workdir, "config.json"), c.to_json_best_effort(indent=1))
  _log_sparsity(s, state, workdir)
  train_step = compile_train_step(s)
  finite = jax.jit(steps.all_finite)
  evaluators = s.evaluators
  progress = metrics_lib.Progress(step, s.total_steps, c.data.batch_size)
  metrics_lib.log(f"Training {s.config.model.name} from step {step} to {s.total_steps} "
                  f"({s.train_data.steps_per_epoch} steps/epoch) on mesh {dict(s.mesh.shape)}.")
  pending, results = [], {}
  batches = iter(s.train_data)
  while step < s.total_steps:
    state, step_metrics = train_step(state, sharding.global_batch(next(batches), s.mesh))
    step += 1
    pending.append(step_metrics)
    last = step == s.total_steps
    stopping = stop.should_stop(step, c.log_every_steps)
    if step % c.log_every_steps == 0 or last or stopping:
      history = _checked(pending, step)
      scalars = {**metrics_lib.summarize(history), **progress.update(step)}
      # Counts are totals since the last log line, not means.
      scalars.update({k: float(sum(h[k] for h in history)) for k in history[0]
                      if k.startswith("data/")})
      writer.write(step, scalars)
      metrics_lib.log(progress.line(step, scalars))
      results.update(scalars)
      pending = []
    if last or stopping or step % c.checkpoint_every_steps == 0:
      _checked(pending, step)
      if not bool(finite(state["params"])):
        raise metrics_lib.NonFiniteLossError(f"Parameters are not finite at step {step}; "
                                             "not saving a checkpoint.")
      ckpt.save(step, state, s.train_data.get_state())
    if last or (c.eval_every_steps and step % c.eval_every_steps == 0):
      eval_results = _evaluate(evaluators, state, writer, step)
      metrics_lib.log(f"step {step} eval: {eval_results}")
      results.update(eval_results)
    if stopping:
      metrics_lib.log(f"Stopped at step {step}; checkpoint saved.")
      break
  _log_sparsity(s, state, workdir)
  return {"step": step, **results}
