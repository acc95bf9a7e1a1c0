"""Salient-object metrics: mean absolute error and maximum F-measure, summed
on device over a split (`Evaluator.reduced`).

Per image i with saliency S_i in [0, 1] and binary ground truth G_i (label
!= 0 salient; pixels labelled `ignore` count nowhere), over its n_i known
pixels:

- MAE_i = (1 / n_i) sum_p |S_i(p) - G_i(p)|; "mae" = mean_i MAE_i
  (Perazzi et al., CVPR 2012; every salient-object benchmark).
- For each of 256 thresholds t = 0..255 the map is binarised as
  M_i^t(p) = [255 * S_i(p) >= t] (the 8-bit maps the benchmarks read), and
  P_i^t = |M ∩ G| / |M| (0 when M is empty), R_i^t = |M ∩ G| / max(|G|, 1).
  Precision and recall are averaged over images at each threshold, P^t =
  mean_i P_i^t, R^t = mean_i R_i^t, and F^t = (1 + b2) P^t R^t / (b2 P^t + R^t)
  with b2 = beta^2 = 0.3 (Achanta et al., CVPR 2009); "max_f" =
  max_t F^t: the convention of the benchmark of Borji et al. (TIP 2015) and
  of the PR curves the salient-object papers report (e.g. DSS, CVPR 2017).
  (PySODMetrics' "maxFm" instead averages F_i^t over images.)

Maps are used as given (no per-image min-max rescaling, which some toolboxes
apply to the saved maps; set `minmax_normalize` for it). Device sums per
batch: the MAE_i, and per threshold the P_i^t and R_i^t, over real rows; the
per-image counts come from a 256-bin histogram of the quantised map, so no
per-pixel array reaches the host.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.batch import MASK
from vision_jax.data import pipeline
from vision_jax.evaluators.base import Evaluator
from vision_jax.tasks.saliency.connectivity import IGNORE, salient_and_known

THRESHOLDS = 256  # t = 0..255 on the 8-bit scale.


def _minmax(s: jax.Array) -> jax.Array:
  lo = jnp.min(s, axis=(1, 2), keepdims=True)
  hi = jnp.max(s, axis=(1, 2), keepdims=True)
  return jnp.where(hi > lo, (s - lo) / jnp.where(hi > lo, hi - lo, 1.0), s)


def per_image(saliency: jax.Array, labels: jax.Array, ignore: int = IGNORE,
              minmax_normalize: bool = False) -> dict:
  """Per image of saliency [B, H, W] and labels [B, H, W]: "mae" [B],
  "precision" and "recall" [B, 256] at thresholds t = 0..255."""
  s = jnp.clip(jnp.asarray(saliency, jnp.float32), 0.0, 1.0)
  if minmax_normalize:
    s = _minmax(s)
  salient, known = salient_and_known(labels, ignore)
  g, known_f = salient.astype(jnp.float32), known.astype(jnp.float32)
  mae = jnp.sum(jnp.abs(s - g) * known_f, (1, 2)) / jnp.maximum(jnp.sum(known_f, (1, 2)), 1.0)
  b = s.shape[0]
  level = jnp.clip(jnp.floor(s * 255.0), 0, THRESHOLDS - 1).astype(jnp.int32)  # 255 s >= t <=> level >= t.
  index = (jnp.arange(b, dtype=jnp.int32)[:, None, None] * THRESHOLDS + level).ravel()
  histogram = lambda w: jax.ops.segment_sum(w.ravel(), index, b * THRESHOLDS).reshape(b, -1)
  at_least = lambda h: jnp.cumsum(h[:, ::-1], axis=1)[:, ::-1]  # Pixels with level >= t.
  tp = at_least(histogram(g * known_f))
  positives = at_least(histogram(known_f))
  precision = tp / jnp.where(positives > 0, positives, 1.0)
  recall = tp / jnp.maximum(jnp.sum(g * known_f, (1, 2)), 1.0)[:, None]
  return {"mae": mae, "precision": precision, "recall": recall}


def f_measure(precision: np.ndarray, recall: np.ndarray, beta2: float = 0.3) -> np.ndarray:
  """(1 + b2) P R / (b2 P + R), 0 where both are 0."""
  denominator = beta2 * precision + recall
  return np.where(denominator > 0, (1 + beta2) * precision * recall
                  / np.where(denominator > 0, denominator, 1.0), 0.0)


class SaliencyEvaluator(Evaluator):
  """"mae" and "max_f" of the task's "saliency" [B, H, W]
  probabilities against its "label" (`ConnectivityTask.predict`)."""

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, beta2: float = 0.3,
               ignore: int = IGNORE, minmax_normalize: bool = False):
    super().__init__(predict_fn, data=data)
    self.beta2, self.ignore, self.minmax_normalize = beta2, ignore, minmax_normalize

  def sums(self, out: dict) -> dict:
    """Sums over the batch's real rows of MAE_i, P_i^t and R_i^t."""
    m = per_image(out["saliency"], out["label"], self.ignore, self.minmax_normalize)
    real = (jnp.asarray(out[MASK]) > 0).astype(jnp.float32)
    return {"mae": jnp.sum(m["mae"] * real),
            "precision": jnp.sum(m["precision"] * real[:, None], 0),
            "recall": jnp.sum(m["recall"] * real[:, None], 0)}

  def metrics(self, totals: dict) -> dict[str, float]:
    """The split's metrics from the summed `sums`, "counted" and "skipped"
    (records the pipeline could not read: left out of the means, reported)."""
    n = max(int(totals["counted"]), 1)
    f = f_measure(np.asarray(totals["precision"], np.float64) / n,
                  np.asarray(totals["recall"], np.float64) / n, self.beta2)
    return {"mae": float(totals["mae"]) / n, "max_f": float(np.max(f)),
            "skipped_examples": float(totals.get("skipped", 0))}

  def run(self, variables) -> dict[str, float]:
    return self.metrics(self.reduced(variables, self.sums))
