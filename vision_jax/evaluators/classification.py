"""Top-1 / top-5 accuracy over a whole split, each example counted once."""
from typing import Callable

import numpy as np

from vision_jax.data import pipeline
from vision_jax.evaluators.predictions import masked_predictions


class ClassificationEvaluator:
  """Accuracy@k of `predict_fn` over the `data` split.

  `predict_fn(variables, local_batch)` returns host arrays over the global
  batch: the task's predictions plus the batch's `mask` and `skipped` flags;
  padding (mask 0) is ignored. Malformed records count as errors (the
  denominator is the whole split, as for COCO AP) and are reported as
  `skipped_examples`.
  """

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, top_k=(1, 5)):
    self.predict_fn, self.data, self.top_k = predict_fn, data, tuple(top_k)

  def check(self) -> dict:
    """Opens the split and preprocesses one record (before training starts)."""
    return pipeline.check(self.data)

  def run(self, variables) -> dict[str, float]:
    hits, counts = np.zeros(len(self.top_k)), {}
    for out in masked_predictions(self.predict_fn, variables, self.data, counts):
      match = out["top_k"] == out["label"][:, None]
      for i, k in enumerate(self.top_k):
        hits[i] += np.sum(match[:, :k].any(-1))
    # Over the whole split: a record that could not be read counts as an error.
    examples = counts["counted"] + counts["skipped"]
    metrics = {f"top{k}_accuracy": float(h / max(examples, 1)) for k, h in zip(self.top_k, hits)}
    if counts["skipped"]:
      metrics["skipped_examples"] = float(counts["skipped"])
    return metrics
