"""The dead-neuron rate (DNR) of every activation map a model reports: the
share of its channels that are zero (after the ReLU) on every position of
every example of a split. Activating-while-pruning (AP) tracks it as the sign
that pruning has left units dead; counts are summed on device."""
from typing import Callable

import jax.numpy as jnp
import numpy as np

from vision_jax.batch import MASK
from vision_jax.data import pipeline
from vision_jax.evaluators.base import Evaluator

PREFIX = "active/"


class DeadNeuronEvaluator(Evaluator):
  """`dead_neuron_rate/<map>` for each activation map of the task's
  "activations" predictions (`ClassificationTask.activations`), and their
  channel-weighted mean `dead_neuron_rate/all`."""
  PREDICT = "activations"

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec):
    super().__init__(predict_fn, data=data)

  def counts(self, out: dict) -> dict:
    """Per map and channel: the real examples on which it was active."""
    real = out[MASK] > 0
    return {k: jnp.sum(v & real[:, None], axis=0, dtype=jnp.int32) for k, v in out.items()
            if k.startswith(PREFIX)}

  def run(self, variables) -> dict[str, float]:
    totals = self.reduced(variables, self.counts)
    maps = {k[len(PREFIX):]: np.asarray(v) for k, v in totals.items() if k.startswith(PREFIX)}
    out = {f"dead_neuron_rate/{name}": float(np.mean(v == 0)) for name, v in maps.items()}
    channels = sum(v.size for v in maps.values())
    out["dead_neuron_rate/all"] = float(sum(np.sum(v == 0) for v in maps.values()) / channels)
    return out
