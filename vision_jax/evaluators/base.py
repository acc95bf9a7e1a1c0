"""The evaluator protocol.

An evaluator is built from its `config.evaluators.<name>` entry as
`Evaluator(predict_fn, data=DataSpec, **arguments)` and declares what else it
needs instead of being probed for it:

- `PREDICT`: the name of the task's predict function it reads (a task may
  offer several, `Task.predict_fns()`); a config may choose another with the
  `predict` argument;
- `NEEDS_WORKDIR`: True to be given the run's `workdir` (files it writes).

`predict_fn(variables, local_batch, reduce=None)` returns host arrays over
the global batch: the task's predictions plus the batch's "mask" and
"skipped" flags. With `reduce` (a jax function of those predictions, e.g. a
confusion matrix summed over the batch) it returns only `reduce`'s result,
and the batch's "counted" (real rows) and "skipped" totals, computed on the
devices where the predictions are, so a metric never copies per-pixel
predictions to every host. Pass a bound method or a module-level function:
each distinct `reduce` compiles once.

`check()` opens the split(s) before training starts; `run(variables)` gives
named scalars; `pictures()` named uint8 images (none by default).
"""
from typing import Callable, ClassVar

import numpy as np

from vision_jax.batch import MASK, SKIPPED
from vision_jax.data import pipeline


class Evaluator:
  """Base class: a split, a predict function, and the protocol's defaults."""
  PREDICT: ClassVar[str] = "predict"
  NEEDS_WORKDIR: ClassVar[bool] = False

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec):
    self.predict_fn, self.data = predict_fn, data

  def check(self) -> dict:
    """Opens the split and preprocesses one record (before training starts)."""
    return pipeline.check(self.data)

  def run(self, variables) -> dict[str, float]:
    raise NotImplementedError

  def pictures(self) -> dict[str, np.ndarray]:
    return {}

  def reduced(self, variables, reduce: Callable[[dict], dict],
              data: pipeline.DataSpec | None = None) -> dict[str, np.ndarray]:
    """Sums over the whole split of `reduce(predictions)` (each a sum over
    a batch's real rows, computed on device), plus "counted" and "skipped";
    raises RuntimeError if the split's rows do not add up."""
    data = data or self.data
    num_examples, batches = pipeline.eval_batches(data)
    totals = None
    for batch in batches:
      sums = {k: np.asarray(v) for k, v in self.predict_fn(variables, batch, reduce=reduce).items()}
      totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
    totals = totals or {"counted": np.int64(0), "skipped": np.int64(0)}
    if int(totals["counted"]) + int(totals["skipped"]) != num_examples:
      raise RuntimeError(f"Evaluated {int(totals['counted'])} (+{int(totals['skipped'])} skipped) "
                         f"examples of {data.name}:{data.split}, expected {num_examples}.")
    return totals


def on_host(fn: Callable[[dict, dict], dict]) -> Callable:
  """A predict_fn of the protocol from `fn(variables, local_batch) -> host
  predictions with "mask" and "skipped"` (a hand-written or recorded
  predictor, e.g. in a notebook): `reduce` then runs on the host."""

  def predict_fn(variables, batch, reduce=None):
    out = fn(variables, batch)
    if reduce is None:
      return out
    mask, skipped = np.asarray(out[MASK]), np.asarray(out[SKIPPED])
    return {**{k: np.asarray(v) for k, v in reduce(out).items()},
            "counted": np.sum(mask > 0), "skipped": np.sum(skipped)}

  return predict_fn
