"""The task protocol: what the trainer asks of every task.

A task is built from `config.task` (plus the model's values it shares, such
as `num_classes`, set once in `config.model`) and owns the step's loss:

- `model_inputs(batch)`: the positional inputs of the model (default: the image);
- `train_loss(ctx, params, batch, normalizers)`: the loss the step
  differentiates. The default runs the model once on `model_inputs` and calls
  `loss`; a task overrides it for anything else: two views of one image,
  degraded inputs against clean targets, regularisers on intermediates, or
  frozen teachers (`ctx.teacher(name, ...)`, built from `config.teachers`);
- `normalizers(aux, batch) -> {name: scalar}`: what its loss divides by, as
  sums over the batch's examples that do not depend on the parameters (real
  examples, positive anchors, valid pixels). The train step sums them over the
  global batch (all micro-batches of a gradient-accumulation step);
- `loss(outputs, aux, batch, normalizers=None) -> (loss, metrics)`: with
  `normalizers` given, the loss and every metric are this batch's share of the
  step's and add up over micro-batches; None means this batch's own;
- `infer(apply, batch) -> (outputs, aux)`: the evaluation forward pass, given
  `apply(*inputs)` of the model in inference mode. The default runs it once
  on `model_inputs`; a task overrides it for anything else (sliding windows);
- `predict_fns() -> {name: fn(outputs, aux, batch) -> dict}`: what evaluators
  read, on `infer`'s outputs; each evaluator names the one it uses ("predict"
  by default);
- `default_evaluators() -> {name: {"kind": ..., ...}}`;
- `check(model)`: agreement with the model, before any compute.

A model may add its own loss terms (regularisers on its intermediates, e.g.
Terminator's slow neural loss): `aux[MODEL_LOSSES] = {name: scalar}`, each
already weighted and a mean over the batch; the classification tasks add them
to their loss (as this batch's share of the step) and log them as `loss/<name>`.
"""
import dataclasses
from typing import Any, Callable, ClassVar, Mapping

import flax.linen as nn
import jax

from vision_jax.batch import IMAGE

MODEL_LOSSES = "model_losses"  # aux key of a model's own weighted loss terms.


@dataclasses.dataclass(frozen=True)
class Teacher:
  """A frozen model and its variables (never trained, never checkpointed)."""
  model: nn.Module
  variables: Any


@dataclasses.dataclass(frozen=True)
class StepContext:
  """What a task's `train_loss` may use besides the parameters and the batch."""
  model: nn.Module
  model_state: dict  # Non-parameter collections (e.g. batch_stats).
  rng: jax.Array  # This step's (and micro-batch's) key.
  teachers: Mapping[str, Teacher] = dataclasses.field(default_factory=dict)

  def apply(self, params, *inputs, train: bool = True) -> tuple[Any, dict, dict]:
    """(outputs, aux, new model_state) of the trained model."""
    variables = {"params": params, **self.model_state}
    rngs = {"dropout": self.rng}
    if not self.model_state or not train:
      (outputs, aux) = self.model.apply(variables, *inputs, train=train, rngs=rngs)
      return outputs, aux, self.model_state
    (outputs, aux), new_state = self.model.apply(variables, *inputs, train=True,
                                                 mutable=list(self.model_state), rngs=rngs)
    return outputs, aux, new_state

  def teacher(self, name: str, *inputs) -> tuple[Any, dict]:
    """(outputs, aux) of the frozen teacher `name` in inference mode, no gradient."""
    if name not in self.teachers:
      raise KeyError(f"No teacher {name!r}; config.teachers has {sorted(self.teachers)}.")
    t = self.teachers[name]
    return jax.lax.stop_gradient(t.model.apply(t.variables, *inputs, train=False))


class Task:
  """Defaults of the protocol; a task implements at least `loss` and `predict`."""
  # Constructor arguments the trainer takes from the model (set once, in config.model).
  SHARED_WITH_MODEL: ClassVar[tuple[str, ...]] = ()

  def model_inputs(self, batch: dict) -> tuple:
    return (batch[IMAGE],)

  def check(self, model: nn.Module) -> None:
    """Raises ValueError when the model cannot serve this task (no compute)."""
    del model

  def normalizers(self, aux: dict, batch: dict) -> dict:
    del aux, batch
    return {}

  def loss(self, outputs, aux: dict, batch: dict,
           normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    raise NotImplementedError

  def train_loss(self, ctx: StepContext, params, batch: dict,
                 normalizers: dict | None) -> tuple[jax.Array, tuple[dict, dict]]:
    """(loss, (metrics, new model_state)): one forward pass, then `loss`."""
    outputs, aux, model_state = ctx.apply(params, *self.model_inputs(batch))
    loss, metrics = self.loss(outputs, aux, batch, normalizers)
    return loss, (metrics, model_state)

  def infer(self, apply: Callable, batch: dict) -> tuple[Any, dict]:
    """(outputs, aux) of the model in inference mode on this batch."""
    return apply(*self.model_inputs(batch))

  def predict(self, outputs, aux: dict, batch: dict) -> dict:
    raise NotImplementedError

  def predict_fns(self) -> dict[str, Callable]:
    return {"predict": self.predict}

  def default_evaluators(self) -> dict:
    return {}
