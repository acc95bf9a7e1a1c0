"""The pure functions the trainer jits: state init, train step, predict.

The train state is a dict {step, params, model_state, opt_state, rng}; all
randomness of step s comes from fold_in(rng, s), so a run is a function of
its seed and data order. Gradient accumulation splits the global batch into
`accum_steps` strided micro-batches (each spread over every data shard) and
sums their gradients with `lax.scan`, each micro-batch's loss normalised by
the whole batch's counts (`make_train_step`).
"""
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vision_jax.batch import COUNT_PREFIX, MASK, RECORD, SKIPPED
from vision_jax.optim import transforms as optim_transforms
from vision_jax.tasks.base import StepContext, Teacher

State = dict[str, Any]


def make_init(model: nn.Module, tx: optax.GradientTransformation, inputs: tuple,
              seed: int) -> Callable[[], State]:
  """A function of no arguments returning a fresh train state (jit it sharded);
  `inputs` are the model's inputs for one example (shapes and dtypes)."""

  def init() -> State:
    root = jax.random.PRNGKey(seed)
    init_rng, train_rng = jax.random.split(root)
    examples = [jnp.zeros((1, *x.shape), x.dtype) for x in inputs]
    variables = dict(model.init({"params": init_rng, "dropout": init_rng}, *examples,
                                train=False))
    params = variables.pop("params")
    opt_state = tx.init(params)
    return {"step": jnp.zeros((), jnp.int32),
            "params": optim_transforms.project_params(opt_state, params),
            "model_state": variables, "opt_state": opt_state, "rng": train_rng}

  return init


def variables_of(state: State) -> dict:
  return {"params": state["params"], **state["model_state"]}


def _micro_batches(batch: dict, k: int) -> dict:
  """[B, ...] -> [k, B/k, ...] with micro-batch i = rows i, i+k, i+2k, ..."""
  return jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1),
                      batch)


def static_aux(task, ctx: StepContext, params, batch: dict) -> dict:
  """The model's aux for `batch` as a trace sees it, without compute: arrays
  become ShapeDtypeStructs, static entries (e.g. pyramid sizes) stay as they are."""
  found = []

  def probe(p, b):
    _, aux, _ = ctx.apply(p, *task.model_inputs(b))
    found.append(jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if isinstance(a, jax.Array) else a, aux))
    return jnp.zeros(())

  jax.eval_shape(probe, params, batch)
  return found[0]


def step_normalizers(task, aux: dict, micro: dict) -> dict:
  """The task's normalizers summed over all micro-batches [k, B/k, ...] of a
  step, one micro-batch at a time (as the gradients are)."""
  per_micro = jax.lax.map(lambda batch: task.normalizers(aux, batch), micro)
  return jax.tree.map(lambda x: jnp.sum(x, axis=0), per_micro)


def make_train_step(model: nn.Module, task, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, accum_steps: int = 1,
                    teacher_models: Mapping[str, nn.Module] | None = None) -> Callable:
  """step(state, batch, teacher_variables) -> (state, metrics); metrics are scalars.

  The loss is the task's `train_loss` (`vision_jax.tasks.base`), given the
  model, its state, the step's rng and the frozen teachers
  (`teacher_models`, whose variables come in as the step's third argument).
  With `accum_steps` > 1 the loss is exactly that of the whole batch: the
  task's `normalizers(aux, batch)` (sums over examples, independent of the
  parameters: positives, real examples, valid pixels) are summed over the
  global batch first and passed to every micro-batch's loss, whose value,
  gradient and metrics are then that micro-batch's share of the step's, and
  add up.
  """
  teacher_models = dict(teacher_models or {})

  def context(model_state, rng, teacher_variables) -> StepContext:
    teachers = {n: Teacher(teacher_models[n], v) for n, v in teacher_variables.items()}
    return StepContext(model, model_state, rng, teachers)

  def grads_of(params, ctx: StepContext, batch, normalizers):
    loss_fn = lambda p: task.train_loss(ctx, p, batch, normalizers)
    (_, (metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, metrics, new_model_state

  def step(state: State, batch: dict, teacher_variables: dict | None = None) -> tuple[State, dict]:
    teacher_variables = teacher_variables or {}
    rng = jax.random.fold_in(state["rng"], state["step"])
    params = state["params"]
    if accum_steps == 1:
      grads, metrics, model_state = grads_of(
          params, context(state["model_state"], rng, teacher_variables), batch, None)
    else:
      micro = _micro_batches(batch, accum_steps)
      first = jax.tree.map(lambda x: x[0], micro)
      aux = static_aux(task, context(state["model_state"], rng, teacher_variables), params, first)
      normalizers = step_normalizers(task, aux, micro)

      def body(carry, inputs):
        grad_sum, metric_sum, model_state = carry
        index, micro_batch = inputs
        ctx = context(model_state, jax.random.fold_in(rng, index), teacher_variables)
        grads, metrics, model_state = grads_of(params, ctx, micro_batch, normalizers)
        return (jax.tree.map(jnp.add, grad_sum, grads), jax.tree.map(jnp.add, metric_sum, metrics),
                model_state), None

      zeros = jax.tree.map(jnp.zeros_like, params)
      metric_zeros = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), jax.eval_shape(
          lambda: grads_of(params, context(state["model_state"], rng, teacher_variables), first,
                           normalizers)[1]))
      (grads, metrics, model_state), _ = jax.lax.scan(
          body, (zeros, metric_zeros, state["model_state"]), (jnp.arange(accum_steps), micro))
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_params = optim_transforms.after_update(opt_state, optax.apply_updates(params, updates))
    new_state = {"step": state["step"] + 1, "params": new_params,
                 "model_state": model_state, "opt_state": opt_state, "rng": state["rng"]}
    metrics = {f"train/{k}": v for k, v in metrics.items()}
    metrics.update({f"train/{k}": v for k, v in
                    optim_transforms.state_metrics(opt_state, new_params).items()})
    metrics.update({"train/learning_rate": schedule(state["step"]),
                    "train/grad_norm": optax.global_norm(grads), **data_counts(batch)})
    return new_state, metrics

  return step


def data_counts(batch: dict) -> dict:
  """Batch totals of the skipped flag and of the pp ops' counters, as data/<name>."""
  counts = {"data/skipped": jnp.sum(batch[SKIPPED])}
  counts.update({f"data/{k[len(COUNT_PREFIX):]}": jnp.sum(v) for k, v in batch.items()
                 if k.startswith(COUNT_PREFIX)})
  return counts


def make_predict(model: nn.Module, task, name: str = "predict",
                 reduce: Callable[[dict], dict] | None = None) -> Callable:
  """predict(variables, batch) -> the task's predict function `name` + the
  batch's flags; with `reduce`, only `reduce` of that (e.g. sums over the
  batch, computed where the predictions are) and the batch's "counted"
  (real rows) and "skipped" totals."""
  fns = task.predict_fns()
  if name not in fns:
    raise ValueError(f"The task has no predict function {name!r}; it has {sorted(fns)}.")
  fn = fns[name]

  def predict(variables: dict, batch: dict) -> dict:
    outputs, aux = task.infer(lambda *inputs: model.apply(variables, *inputs, train=False),
                              batch)
    out = {**fn(outputs, aux, batch), MASK: batch[MASK], SKIPPED: batch[SKIPPED]}
    if RECORD in batch:
      out[RECORD] = batch[RECORD]
    if reduce is None:
      return out
    return {**reduce(out), "counted": jnp.sum(batch[MASK] > 0), "skipped": jnp.sum(batch[SKIPPED])}

  return predict


def all_finite(tree: Any) -> jax.Array:
  """True when every floating leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
