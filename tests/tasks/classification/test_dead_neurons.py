"""Dead-neuron rate: the task's activation indicators and the evaluator's
split-wide reduction, against a direct NumPy count."""
import jax.numpy as jnp
import numpy as np

from vision_jax.data import pipeline
from vision_jax.evaluators.base import on_host
from vision_jax.tasks.base import MODEL_LOSSES
from vision_jax.tasks.classification.dead_neurons import DeadNeuronEvaluator
from vision_jax.tasks.classification.task import ClassificationTask

PP = "decode|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"


def test_activations_mark_channels_positive_anywhere():
  maps = jnp.zeros((2, 3, 3, 4)).at[0, 2, 1, 1].set(0.5).at[1, 0, 0, 3].set(2.0)
  pooled = jnp.array([[1.0, -1.0], [0.0, 3.0]])
  aux = {"stage1": maps, "pre_logits": pooled, MODEL_LOSSES: {"x": jnp.ones(())},
         "sizes": (3, 3)}
  out = ClassificationTask().activations(jnp.zeros((2, 10)), aux, {})
  assert sorted(out) == ["active/pre_logits", "active/stage1"]
  np.testing.assert_array_equal(out["active/stage1"], [[0, 1, 0, 0], [0, 0, 0, 1]])
  np.testing.assert_array_equal(out["active/pre_logits"], [[1, 0], [0, 1]])


def bright_pixels(variables, batch):
  """A 'network' whose 64 channels are the pixels, active when brighter than a threshold."""
  images = np.asarray(batch["image"]).reshape(len(batch["image"]), -1)
  return {"active/pixels": images > variables["threshold"], "mask": batch["mask"],
          "skipped": batch["skipped"]}


def test_rate_is_the_share_of_channels_never_active_on_the_split(tmp_path):
  spec = pipeline.DataSpec(name="sklearn_digits", split="test", pp=PP, global_batch=64,
                           data_dir=str(tmp_path))
  evaluator = DeadNeuronEvaluator(on_host(bright_pixels), data=spec)
  images = np.concatenate([np.asarray(b["image"])[np.asarray(b["mask"]) > 0]
                           for b in pipeline.eval_batches(spec)[1]]).reshape(-1, 64)
  assert len(images) == 359
  for threshold in (0.0, 0.9):
    expected = float(np.mean(~np.any(images > threshold, axis=0)))
    got = evaluator.run({"threshold": threshold})
    assert got == {"dead_neuron_rate/pixels": expected, "dead_neuron_rate/all": expected}
  assert evaluator.run({"threshold": 0.9})["dead_neuron_rate/pixels"] > 0.0  # Border pixels.
