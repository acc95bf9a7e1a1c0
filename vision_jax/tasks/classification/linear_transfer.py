"""Linear transfer: a frozen network's features on another dataset, fitted by a
linear classifier (the transferability measure of GCR, Wang, Li & Zhang,
ICCV 2023, Sec. 5.3, after Kornblith, Shlens & Le, "Do Better ImageNet Models
Transfer Better?", CVPR 2019: L2-regularised multinomial logistic regression
fitted with L-BFGS on the penultimate features)."""
import dataclasses
from typing import Callable

import numpy as np

from vision_jax.data import pipeline
from vision_jax.evaluators.base import Evaluator
from vision_jax.evaluators.predictions import masked_predictions


class LinearTransferEvaluator(Evaluator):
  """Fits logistic regression on `fit_split` features of `dataset` and reports
  its accuracy on the evaluator's split (`data.split`).

  Features are the task's "features" predictions (the model's aux["pre_logits"]),
  standardised with the fit split's mean and std; `l2` is the inverse of
  scikit-learn's C, per example as in Kornblith et al.
  """
  PREDICT = "features"

  def __init__(self, predict_fn: Callable, *, data: pipeline.DataSpec, fit_split: str,
               dataset: str | None = None, l2: float = 1e-3, max_iter: int = 1000):
    super().__init__(predict_fn, data=data)
    name = dataset or data.name
    self.fit_data = dataclasses.replace(data, name=name, split=fit_split)
    self.test_data = dataclasses.replace(data, name=name)
    self.l2, self.max_iter = l2, max_iter

  def check(self) -> dict:
    """Opens both splits and preprocesses one record of each (before training starts)."""
    pipeline.check(self.fit_data)
    return pipeline.check(self.test_data)

  def _features(self, variables, data) -> tuple[np.ndarray, np.ndarray, int]:
    counts, feats, labels = {}, [], []
    for out in masked_predictions(self.predict_fn, variables, data, counts):
      if "features" not in out:
        raise ValueError("LinearTransferEvaluator needs the task's 'features' predictions "
                         "(predict='features', a model that sets aux['pre_logits']).")
      feats.append(out["features"].astype(np.float64))
      labels.append(out["label"])
    return np.concatenate(feats), np.concatenate(labels), counts["skipped"]

  def run(self, variables) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    x_fit, y_fit, skipped_fit = self._features(variables, self.fit_data)
    x_test, y_test, skipped_test = self._features(variables, self.test_data)
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    classifier = LogisticRegression(C=1.0 / (self.l2 * len(y_fit)), max_iter=self.max_iter)
    classifier.fit((x_fit - mean) / std, y_fit)
    correct = np.sum(classifier.predict((x_test - mean) / std) == y_test)
    accuracy = float(correct / (len(y_test) + skipped_test))  # Unreadable records are errors.
    metrics = {"top1_accuracy": accuracy, "fit_examples": float(len(y_fit))}
    if skipped_fit + skipped_test:
      metrics["skipped_examples"] = float(skipped_fit + skipped_test)
    return metrics
