"""Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in
a Neural Network", arXiv:1503.02531, Sec. 2): a student trained on

  L = (1 - alpha) CE(y, softmax(z_s)) + alpha T^2 KL(softmax(z_t / T) || softmax(z_s / T))

with z_t the logits of a frozen teacher (`config.teachers.<teacher>`) on the
same images and T the temperature; the T^2 keeps the soft term's gradients
on the scale of the hard one's (Sec. 2). Predictions and evaluators are the
classification task's.
"""
import jax
import jax.numpy as jnp

from vision_jax.batch import MASK
from vision_jax.tasks.base import StepContext
from vision_jax.tasks.classification.task import ClassificationTask


def soft_cross_entropy(student_logits: jax.Array, teacher_logits: jax.Array,
                       temperature: float) -> jax.Array:
  """Per example KL(softmax(z_t / T) || softmax(z_s / T)) [B]."""
  teacher = jax.nn.softmax(teacher_logits / temperature, axis=-1)
  log_student = jax.nn.log_softmax(student_logits / temperature, axis=-1)
  log_teacher = jax.nn.log_softmax(teacher_logits / temperature, axis=-1)
  return jnp.sum(teacher * (log_teacher - log_student), axis=-1)


class DistillationTask(ClassificationTask):
  """Classification whose loss also follows a frozen teacher's soft labels."""

  def __init__(self, teacher: str = "teacher", alpha: float = 0.5, temperature: float = 4.0,
               labels_key: str = "labels", top_k: int = 5):
    super().__init__(labels_key, top_k)
    if not 0.0 <= alpha <= 1.0 or temperature <= 0:
      raise ValueError(f"Distillation needs 0 <= alpha <= 1 and temperature > 0, got alpha={alpha}, "
                       f"temperature={temperature}.")
    self.teacher, self.alpha, self.temperature = teacher, alpha, temperature

  def train_loss(self, ctx: StepContext, params, batch: dict, normalizers: dict | None):
    logits, aux, model_state = ctx.apply(params, *self.model_inputs(batch))
    teacher_logits, _ = ctx.teacher(self.teacher, *self.model_inputs(batch))
    hard, metrics = self.loss(logits, aux, batch, normalizers)
    count = (normalizers or self.normalizers(aux, batch))["examples"]
    soft_per_example = soft_cross_entropy(logits, jnp.asarray(teacher_logits, jnp.float32),
                                          self.temperature)
    soft = jnp.sum(soft_per_example * batch[MASK]) / jnp.maximum(count, 1.0)
    loss = (1 - self.alpha) * hard + self.alpha * self.temperature**2 * soft
    agree = jnp.argmax(logits, -1) == jnp.argmax(teacher_logits, -1)
    metrics = {**metrics, "loss": loss, "hard_loss": hard, "soft_loss": soft,
               "teacher_agreement": jnp.sum(agree * batch[MASK]) / jnp.maximum(count, 1.0)}
    return loss, (metrics, model_state)
