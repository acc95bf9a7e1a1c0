"""Runs a predict_fn over a whole split: each real example exactly once."""
from typing import Callable, Iterator

import numpy as np

from vision_jax.batch import MASK, SKIPPED
from vision_jax.data import pipeline


def masked_predictions(predict_fn: Callable, variables, data: pipeline.DataSpec,
                       counts: dict) -> Iterator[dict[str, np.ndarray]]:
  """Yields each batch's host outputs restricted to its real rows (mask 1).

  `counts` gets "counted" and "skipped" (malformed records); when the batches
  are exhausted, a split whose rows do not add up raises RuntimeError.
  """
  num_examples, batches = pipeline.eval_batches(data)
  counts.update(counted=0, skipped=0)
  for batch in batches:
    out = predict_fn(variables, batch)
    mask = np.asarray(out[MASK]) > 0
    counts["counted"] += int(mask.sum())
    counts["skipped"] += int(np.sum(out[SKIPPED]))
    yield {k: np.asarray(v)[mask] for k, v in out.items() if k not in (MASK, SKIPPED)}
  if counts["counted"] + counts["skipped"] != num_examples:
    raise RuntimeError(f"Evaluated {counts['counted']} (+{counts['skipped']} skipped) examples "
                       f"of {data.name}:{data.split}, expected {num_examples}.")
