"""The evaluator protocol: declared needs, named predict functions, and sums
reduced on device equal to the same metric computed on host copies."""
import numpy as np
import pytest

from vision_jax import config as config_lib, steps, train
from vision_jax.evaluators.base import Evaluator, on_host
from vision_jax.tasks.classification.evaluator import ClassificationEvaluator
from vision_jax.tasks.classification.linear_transfer import LinearTransferEvaluator
from vision_jax.tasks.detection.coco_evaluator import CocoEvaluator
from tiny_config import tiny_config


def test_declared_needs():
  assert (Evaluator.PREDICT, Evaluator.NEEDS_WORKDIR) == ("predict", False)
  assert CocoEvaluator.NEEDS_WORKDIR and not ClassificationEvaluator.NEEDS_WORKDIR
  assert LinearTransferEvaluator.PREDICT == "features"


def test_device_sums_equal_host_accuracy_and_predict_names_are_checked():
  c = tiny_config(**{"evaluators.eval": {"kind": "classification", "top_k": (1, 3)},
                     "evaluators.probe": {"kind": "linear_transfer", "fit_split": "train",
                                          "split": "test"}})
  s = train.setup(c)
  try:
    state = train.init_state(s)
    variables = steps.variables_of(state)
    device = s.evaluators["eval"].run(variables)
    plain = train.Predictor(s.model, s.task, s.mesh).function("predict")
    host = ClassificationEvaluator(on_host(plain), data=s.evaluators["eval"].data,
                                   top_k=(1, 3)).run(variables)
    assert device == host and set(device) == {"top1_accuracy", "top3_accuracy"}
    assert 0.0 <= device["top1_accuracy"] <= device["top3_accuracy"] <= 1.0
    # What crosses to the host under `reduce`: the sums only.
    batch = next(iter(s.train_data))
    sums = s.evaluators["eval"].predict_fn(variables, batch, reduce=s.evaluators["eval"].hits)
    assert {k: np.shape(v) for k, v in sums.items()} == {"hits": (2,), "counted": (),
                                                         "skipped": ()}
    assert int(sums["counted"]) == len(batch["image"])
  finally:
    s.close()
  bad = tiny_config(**{"evaluators.eval": {"kind": "classification", "predict": "boxes"}})
  with pytest.raises(config_lib.ConfigError, match=r"evaluators.eval reads the task's 'boxes' "
                                                   r"predictions; the task 'classification' has "
                                                   r"\['activations', 'features', 'predict'\]"):
    train.setup(bad)
