"""Top-1 / top-5 accuracy over a whole split, each example counted once,
summed on device."""
from typing import Callable

import jax.numpy as jnp

from vision_jax.batch import MASK
from vision_jax.data import pipeline
from vision_jax.evaluators.base import Evaluator


class ClassificationEvaluator(Evaluator):
  """Accuracy@k of the task's "predict" (top-k classes and label) over the
  `data` split. Hits are summed over each global batch where the predictions
  are; padding (mask 0) is ignored. Malformed records count as errors (the
  denominator is the whole split, as for COCO AP) and are reported as
  `skipped_examples`.
  """

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, top_k=(1, 5)):
    super().__init__(predict_fn, data=data)
    self.top_k = tuple(top_k)

  def hits(self, out: dict) -> dict:
    """{"hits": [len(top_k)]}: the real rows whose label is in the top k."""
    match = out["top_k"] == out["label"][:, None]
    real = out[MASK] > 0
    return {"hits": jnp.stack([jnp.sum(jnp.any(match[:, :k], -1) & real) for k in self.top_k])}

  def run(self, variables) -> dict[str, float]:
    totals = self.reduced(variables, self.hits)
    # Over the whole split: a record that could not be read counts as an error.
    examples = int(totals["counted"]) + int(totals["skipped"])
    metrics = {f"top{k}_accuracy": float(h / max(examples, 1))
               for k, h in zip(self.top_k, totals["hits"])}
    if totals["skipped"]:
      metrics["skipped_examples"] = float(totals["skipped"])
    return metrics
