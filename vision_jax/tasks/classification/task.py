"""Image classification: softmax cross-entropy on (optionally smoothed) one-hot labels."""
import jax
import jax.numpy as jnp
import optax

from vision_jax.batch import LABELS, MASK
from vision_jax.tasks.base import MODEL_LOSSES, Task


class ClassificationTask(Task):
  """Loss and predictions for logits [B, C] against one-hot `labels` [B, C]."""

  def __init__(self, labels_key: str = LABELS, top_k: int = 5):
    self.labels_key = labels_key
    self.top_k = top_k

  def normalizers(self, aux: dict, batch: dict) -> dict:
    """The number of real examples (mask 1) of the batch, which the loss divides by."""
    del aux
    return {"examples": jnp.sum(batch[MASK])}

  def loss(self, logits: jax.Array, aux: dict, batch: dict,
           normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    """Mean cross-entropy over the real examples of the step (`normalizers`;
    default: this batch's), plus the model's own loss terms (aux[MODEL_LOSSES])."""
    labels, mask = batch[self.labels_key], batch[MASK]
    count = (normalizers or self.normalizers(aux, batch))["examples"]
    per_example = optax.softmax_cross_entropy(logits, labels)
    correct = jnp.argmax(logits, -1) == jnp.argmax(labels, -1)
    mean = lambda v: jnp.sum(v * mask) / jnp.maximum(count, 1.0)
    loss = mean(per_example)
    metrics = {"accuracy": mean(correct)}
    for name, term in aux.get(MODEL_LOSSES, {}).items():
      metrics[f"loss/{name}"] = mean(term * jnp.ones_like(mask))  # This batch's share.
      loss = loss + metrics[f"loss/{name}"]
    return loss, {"loss": loss, **metrics}

  def predict(self, logits: jax.Array, aux: dict, batch: dict) -> dict:
    """Top-k classes and the label."""
    del aux
    k = min(self.top_k, logits.shape[-1])
    return {"top_k": jax.lax.top_k(logits, k)[1], "label": jnp.argmax(batch[self.labels_key], -1)}

  def features(self, logits: jax.Array, aux: dict, batch: dict) -> dict:
    """The penultimate features (the model's aux["pre_logits"]) and the label."""
    del logits
    if "pre_logits" not in aux:
      raise ValueError("The 'features' predictions need a model that reports aux['pre_logits'].")
    return {"features": jnp.asarray(aux["pre_logits"], jnp.float32),
            "label": jnp.argmax(batch[self.labels_key], -1)}

  def activations(self, logits: jax.Array, aux: dict, batch: dict) -> dict:
    """Per example and channel, whether each activation map of the model's aux
    ([B, H, W, C] or [B, C], e.g. ResNet's stem and stage outputs) is positive
    anywhere: `active/<name>` [B, C] (the dead-neuron evaluator's input)."""
    del logits, batch
    out = {}
    for name, value in aux.items():
      if isinstance(value, jax.Array) and value.ndim in (2, 4) and name != MODEL_LOSSES:
        out[f"active/{name}"] = jnp.any(value > 0, axis=tuple(range(1, value.ndim - 1)))
    if not out:
      raise ValueError("The 'activations' predictions need a model that reports activation "
                       "maps ([B, H, W, C] or [B, C]) in its aux.")
    return out

  def predict_fns(self) -> dict:
    return {"predict": self.predict, "features": self.features, "activations": self.activations}

  def default_evaluators(self) -> dict:
    return {"eval": {"kind": "classification"}}
