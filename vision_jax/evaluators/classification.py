"""Top-1 / top-5 accuracy over a whole split, each example counted once."""
from typing import Callable

import numpy as np

from vision_jax.data import pipeline


class ClassificationEvaluator:
  """Accuracy@k of `predict_fn` over the `data` split.

  `predict_fn(variables, local_batch)` returns host arrays over the global
  batch: the task's predictions plus the batch's `mask` and `skipped` flags;
  padding (mask 0) is ignored and malformed records are reported.
  """

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, top_k=(1, 5)):
    self.predict_fn, self.data, self.top_k = predict_fn, data, tuple(top_k)

  def run(self, variables) -> dict[str, float]:
    num_examples, batches = pipeline.eval_batches(self.data)
    hits = np.zeros(len(self.top_k))
    counted = skipped = 0
    for batch in batches:
      out = self.predict_fn(variables, batch)
      mask = np.asarray(out["mask"]) > 0
      match = np.asarray(out["top_k"]) == np.asarray(out["label"])[:, None]
      for i, k in enumerate(self.top_k):
        hits[i] += np.sum(match[:, :k].any(-1) & mask)
      counted += int(mask.sum())
      skipped += int(np.sum(out["skipped"]))
    if counted + skipped != num_examples:
      raise RuntimeError(f"Evaluated {counted} (+{skipped} skipped) examples of "
                         f"{self.data.split!r}, expected {num_examples}.")
    metrics = {f"top{k}_accuracy": float(h / max(counted, 1)) for k, h in zip(self.top_k, hits)}
    if skipped:
      metrics["skipped_examples"] = float(skipped)
    return metrics
