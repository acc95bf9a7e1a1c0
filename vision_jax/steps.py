"""The pure functions the trainer jits: state init, train step, predict.

The train state is a dict {step, params, model_state, opt_state, rng}; all
randomness of step s comes from fold_in(rng, s), so a run is a function of
its seed and data order. Gradient accumulation splits the global batch into
`accum_steps` strided micro-batches (each spread over every data shard) and
averages their gradients with `lax.scan`.
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


def make_train_step(model: nn.Module, task, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, accum_steps: int = 1) -> Callable:
  """step(state, batch) -> (state, metrics); metrics are scalars."""

  def grads_of(params, model_state, batch, rng):
    def loss_fn(p):
      (outputs, aux), new_model_state = _apply_train(model, p, model_state, batch[IMAGE], rng)
      loss, metrics = task.loss(outputs, aux, batch)
      return loss, (metrics, new_model_state)
    (_, (metrics, new_model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return grads, metrics, new_model_state

  def step(state: State, batch: dict) -> tuple[State, dict]:
    rng = jax.random.fold_in(state["rng"], state["step"])
    params = state["params"]
    if accum_steps == 1:
      grads, metrics, model_state = grads_of(params, state["model_state"], batch, rng)
    else:
      def body(carry, inputs):
        grad_sum, model_state = carry
        index, micro = inputs
        grads, metrics, model_state = grads_of(params, model_state, micro,
                                               jax.random.fold_in(rng, index))
        return (jax.tree.map(jnp.add, grad_sum, grads), model_state), metrics
      zeros = jax.tree.map(jnp.zeros_like, params)
      (grad_sum, model_state), metrics = jax.lax.scan(
          body, (zeros, state["model_state"]),
          (jnp.arange(accum_steps), _micro_batches(batch, accum_steps)))
      grads = jax.tree.map(lambda g: g / accum_steps, grad_sum)
      metrics = jax.tree.map(jnp.mean, metrics)
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
