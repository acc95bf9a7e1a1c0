"""The pure functions the trainer jits: state init, train step, predict.

The train state is a dict {step, params, model_state, opt_state, rng}; all
randomness of step s comes from fold_in(rng, s), so a run is a function of
its seed and data order. Gradient accumulation splits the global batch into
`accum_steps` strided micro-batches (each spread over every data shard) and
sums their gradients with `lax.scan`, each micro-batch's loss normalised by
the whole batch's counts (`make_train_step`).
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from vision_jax.data.pipeline import COUNT_PREFIX, MASK, SKIPPED

State = dict[str, Any]
IMAGE = "image"


def make_init(model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple[int, ...],
              seed: int) -> Callable[[], State]:
  """A function of no arguments returning a fresh train state (jit it sharded)."""

  def init() -> State:
    root = jax.random.PRNGKey(seed)
    init_rng, train_rng = jax.random.split(root)
    variables = model.init({"params": init_rng, "dropout": init_rng},
                           jnp.zeros((1, *image_shape), jnp.float32), train=False)
    variables = dict(variables)
    params = variables.pop("params")
    return {"step": jnp.zeros((), jnp.int32), "params": params, "model_state": variables,
            "opt_state": tx.init(params), "rng": train_rng}

  return init


def variables_of(state: State) -> dict:
  return {"params": state["params"], **state["model_state"]}


def _apply_train(model, params, model_state, images, rng):
  variables = {"params": params, **model_state}
  if not model_state:
    return model.apply(variables, images, train=True, rngs={"dropout": rng}), {}
  return model.apply(variables, images, train=True, mutable=list(model_state),
                     rngs={"dropout": rng})


def _micro_batches(batch: dict, k: int) -> dict:
  """[B, ...] -> [k, B/k, ...] with micro-batch i = rows i, i+k, i+2k, ..."""
  return jax.tree.map(lambda x: jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1),
                      batch)


def static_aux(model: nn.Module, params, model_state, images, rng) -> dict:
  """The model's aux as a trace sees it, without compute: arrays become
  ShapeDtypeStructs, static entries (e.g. pyramid sizes) stay as they are."""
  found = []

  def probe(p, x):
    (_, aux), _ = _apply_train(model, p, model_state, x, rng)
    found.append(jax.tree.map(
        lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if isinstance(a, jax.Array) else a, aux))
    return jnp.zeros(())

  jax.eval_shape(probe, params, images)
  return found[0]


def step_normalizers(task, aux: dict, micro: dict) -> dict:
  """The task's normalizers summed over all micro-batches [k, B/k, ...] of a
  step, one micro-batch at a time (as the gradients are)."""
  per_micro = jax.lax.map(lambda batch: task.normalizers(aux, batch), micro)
  return jax.tree.map(lambda x: jnp.sum(x, axis=0), per_micro)


def make_train_step(model: nn.Module, task, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, accum_steps: int = 1) -> Callable:
  """step(state, batch) -> (state, metrics); metrics are scalars.

  With `accum_steps` > 1 the loss is exactly that of the whole batch: the
  task's `normalizers(aux, batch)` (sums over examples, independent of the
  parameters: positives, real examples, valid pixels) are summed over the
  global batch first and passed to every micro-batch's `loss`, whose value,
  gradient and metrics are then that micro-batch's share of the step's, and
  add up.
  """

  def grads_of(params, model_state, batch, rng, normalizers):
    def loss_fn(p):
      (outputs, aux), new_model_state = _apply_train(model, p, model_state, batch[IMAGE], rng)
      loss, metrics = task.loss(outputs, aux, batch, normalizers)
      return loss, (metrics, new_model_state)
    (_, (metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, metrics, new_model_state

  def step(state: State, batch: dict) -> tuple[State, dict]:
    rng = jax.random.fold_in(state["rng"], state["step"])
    params = state["params"]
    if accum_steps == 1:
      grads, metrics, model_state = grads_of(params, state["model_state"], batch, rng, None)
    else:
      micro = _micro_batches(batch, accum_steps)
      aux = static_aux(model, params, state["model_state"], micro[IMAGE][0], rng)
      normalizers = step_normalizers(task, aux, micro)

      def body(carry, inputs):
        grad_sum, metric_sum, model_state = carry
        index, micro_batch = inputs
        grads, metrics, model_state = grads_of(params, model_state, micro_batch,
                                               jax.random.fold_in(rng, index), normalizers)
        return (jax.tree.map(jnp.add, grad_sum, grads), jax.tree.map(jnp.add, metric_sum, metrics),
                model_state), None

      zeros = jax.tree.map(jnp.zeros_like, params)
      metric_zeros = jax.tree.map(lambda m: jnp.zeros(m.shape, m.dtype), jax.eval_shape(
          lambda: grads_of(params, state["model_state"], jax.tree.map(lambda x: x[0], micro), rng,
                           normalizers)[1]))
      (grads, metrics, model_state), _ = jax.lax.scan(
          body, (zeros, metric_zeros, state["model_state"]), (jnp.arange(accum_steps), micro))
    updates, opt_state = tx.update(grads, state["opt_state"], params)
    new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates),
                 "model_state": model_state, "opt_state": opt_state, "rng": state["rng"]}
    metrics = {f"train/{k}": v for k, v in metrics.items()}
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


def make_predict(model: nn.Module, task) -> Callable:
  """predict(variables, batch) -> the task's predictions + the batch's flags."""

  def predict(variables: dict, batch: dict) -> dict:
    outputs, aux = model.apply(variables, batch[IMAGE], train=False)
    return {**task.predict(outputs, aux, batch), MASK: batch[MASK], SKIPPED: batch[SKIPPED]}

  return predict


def all_finite(tree: Any) -> jax.Array:
  """True when every floating leaf of `tree` is finite."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.floating)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)
