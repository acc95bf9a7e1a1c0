"""The classification loss: cross-entropy over the real examples, plus the
model's own loss terms (aux[MODEL_LOSSES]) as each micro-batch's share."""
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.tasks.base import MODEL_LOSSES
from vision_jax.tasks.classification.task import ClassificationTask


def _batch(rng, n, classes=4):
  return {"labels": jnp.asarray(np.eye(classes)[rng.integers(0, classes, n)], jnp.float32),
          "mask": jnp.asarray([1.0] * (n - 1) + [0.0])}


def test_model_loss_terms_are_added_and_split_over_micro_batches_by_their_examples():
  rng = np.random.default_rng(0)
  task = ClassificationTask()
  logits, batch = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32), _batch(rng, 6)
  aux = {MODEL_LOSSES: {"slow": jnp.float32(0.75)}}
  loss, metrics = task.loss(logits, aux, batch)
  ce = optax.softmax_cross_entropy(logits, batch["labels"])[:5].mean()
  np.testing.assert_allclose(loss, ce + 0.75, rtol=1e-6)
  np.testing.assert_allclose(metrics["loss/slow"], 0.75, rtol=1e-6)
  # Two micro-batches of 3 with 3 and 2 real examples: shares 3/5 and 2/5 of the term.
  step = task.normalizers(aux, batch)
  parts = [task.loss(logits[s], aux, {k: v[s] for k, v in batch.items()}, step)
           for s in (slice(0, 3), slice(3, 6))]
  np.testing.assert_allclose([p[1]["loss/slow"] for p in parts], [0.45, 0.3], rtol=1e-6)
  np.testing.assert_allclose(sum(p[0] for p in parts), loss, rtol=1e-6)
  assert "loss/slow" not in task.loss(logits, {}, batch)[1]
