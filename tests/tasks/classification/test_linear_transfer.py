"""Linear-transfer evaluator: the same fit as scikit-learn on the same features."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from vision_jax.data import pipeline
from vision_jax.tasks.classification.linear_transfer import LinearTransferEvaluator

PP = "decode|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"


def pixel_features(variables, batch):
  """A 'network' whose features are the raw pixels (times a weight)."""
  images = np.asarray(batch["image"], np.float64)
  return {"features": images.reshape(len(images), -1) * variables["scale"],
          "label": np.argmax(batch["labels"], -1), "mask": batch["mask"],
          "skipped": batch["skipped"], "top_k": np.zeros((len(images), 1), np.int32)}


def spec(split, tmp_path):
  return pipeline.DataSpec(name="sklearn_digits", split=split, pp=PP, global_batch=64,
                           data_dir=str(tmp_path))


def test_matches_scikit_learn_on_the_same_features(tmp_path):
  evaluator = LinearTransferEvaluator(pixel_features, data=spec("test_5to9", tmp_path),
                                      fit_split="train_5to9", l2=1e-2)
  result = evaluator.run({"scale": 1.0})

  def arrays(split):
    feats, labels = [], []
    for batch in pipeline.eval_batches(spec(split, tmp_path))[1]:
      keep = np.asarray(batch["mask"]) > 0
      out = pixel_features({"scale": 1.0}, batch)
      feats.append(out["features"][keep])
      labels.append(out["label"][keep])
    return np.concatenate(feats), np.concatenate(labels)

  x_fit, y_fit = arrays("train_5to9")
  x_test, y_test = arrays("test_5to9")
  assert set(np.unique(y_fit)) == {5, 6, 7, 8, 9} and result["fit_examples"] == len(y_fit)
  mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
  reference = LogisticRegression(C=1.0 / (1e-2 * len(y_fit)), max_iter=1000)
  reference.fit((x_fit - mean) / std, y_fit)
  want = np.mean(reference.predict((x_test - mean) / std) == y_test)
  assert result["top1_accuracy"] == pytest.approx(want, abs=1e-12)
  assert 0.8 < want < 1.0  # Pixels separate the digits 5-9 well, not perfectly.


def test_needs_features(tmp_path):
  drop = lambda v, b: {k: x for k, x in pixel_features(v, b).items() if k != "features"}
  evaluator = LinearTransferEvaluator(drop, data=spec("test_5to9", tmp_path),
                                      fit_split="train_5to9")
  with pytest.raises(ValueError, match="'features'"):
    evaluator.run({"scale": 1.0})
