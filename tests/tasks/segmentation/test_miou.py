"""mIoU / mAcc / aAcc against a direct NumPy computation of mmseg's
definition (per-class areas over the dataset, NaN classes left out), with
ignore pixels, labels outside the classes, absent classes and padding rows;
and the evaluator over a split through the real pipeline."""
import numpy as np
import jax.numpy as jnp
import pytest

from vision_jax.batch import MASK, SKIPPED
from vision_jax.data import pipeline
from vision_jax.evaluators.base import on_host
from vision_jax.tasks.segmentation import miou

CLASSES = 6


def _numpy_metrics(labels, predictions, num_classes, ignore=255):
  """mmseg total_intersect_and_union over images, then IoU/Acc with NaN."""
  inter, area_p, area_l = (np.zeros(num_classes) for _ in range(3))
  for label, pred in zip(labels, predictions):
    keep = label != ignore
    label, pred = label[keep], pred[keep]
    hit = pred[pred == label]
    inter += np.histogram(hit, bins=num_classes, range=(0, num_classes - 1))[0]
    area_p += np.histogram(pred, bins=num_classes, range=(0, num_classes - 1))[0]
    area_l += np.histogram(label, bins=num_classes, range=(0, num_classes - 1))[0]
  union = area_p + area_l - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    iou, acc = inter / union, inter / area_l
  return iou, acc, np.nanmean(iou), np.nanmean(acc), inter.sum() / area_l.sum()


def _maps(rng, n=5, h=9, w=11):
  labels = rng.integers(0, CLASSES - 2, (n, h, w))  # Classes 4, 5 never labelled...
  labels[rng.random(labels.shape) < 0.15] = 255
  predictions = rng.integers(0, CLASSES - 1, (n, h, w))  # ... and 5 never predicted.
  return labels.astype(np.uint8), predictions.astype(np.uint8)


def test_scores_equal_numpy_with_ignore_and_absent_classes():
  rng = np.random.default_rng(0)
  labels, predictions = _maps(rng)
  confusion = sum(np.asarray(miou.confusion_matrix(jnp.asarray(l), jnp.asarray(p), CLASSES))
                  for l, p in zip(labels, predictions))
  got = miou.scores(confusion)
  iou, acc, m_iou, m_acc, a_acc = _numpy_metrics(labels, predictions, CLASSES)
  np.testing.assert_allclose(got["iou"], iou, rtol=1e-12)
  np.testing.assert_allclose(got["acc"], acc, rtol=1e-12)
  assert np.isnan(got["iou"][5]) and not np.isnan(got["iou"][4]) and got["iou"][4] == 0
  assert np.isnan(got["acc"][4])  # Predicted but never labelled: Acc undefined.
  np.testing.assert_allclose([got["mIoU"], got["mAcc"], got["aAcc"]], [m_iou, m_acc, a_acc],
                             rtol=1e-12)


def test_evaluator_sums_the_confusion_on_device_over_real_rows_only():
  rng = np.random.default_rng(1)
  labels, predictions = _maps(rng, n=8)
  evaluator = miou.MIoUEvaluator(lambda *a, **k: None, data=None, num_classes=CLASSES,
                                 class_names=[f"c{i}" for i in range(CLASSES)])
  out = {"label": jnp.asarray(labels), "prediction": jnp.asarray(predictions),
         MASK: jnp.asarray([1, 1, 1, 1, 1, 0, 1, 0], jnp.float32)}
  confusion = np.asarray(evaluator.confusion(out)["confusion"])
  real = [0, 1, 2, 3, 4, 6]
  expected = _numpy_metrics(labels[real], predictions[real], CLASSES)
  np.testing.assert_allclose(miou.scores(confusion)["mIoU"], expected[2], rtol=1e-12)
  assert confusion.sum() == (labels[real] != 255).sum()


def test_class_names_must_match_the_classes():
  with pytest.raises(ValueError, match="3 names for 6 classes"):
    miou.MIoUEvaluator(lambda *a, **k: None, data=None, num_classes=6, class_names=["a"] * 3)


def test_evaluator_runs_a_split_and_draws_pictures(seg_folder):
  """A recorded predictor (label shifted by one class on the left half) over
  the folder's val split through the real pipeline and pp ops."""
  root, classes = seg_folder
  spec = pipeline.DataSpec("seg_folder", "val", "decode(channels=3)|seg_label()|"
                           "seg_pad(64, label_size=64)|keep('image', 'segmentation', "
                           "'image/size', 'image/original_size')", global_batch=3, data_dir=root)

  def predictor(variables, batch):
    del variables
    label = np.asarray(batch["segmentation"]).astype(np.int64)
    prediction = label.copy()
    prediction[:, :, :20] = np.where(label[:, :, :20] < 255, (label[:, :, :20] + 1) % classes, 0)
    return {"label": label, "prediction": prediction, MASK: batch[MASK], SKIPPED: batch[SKIPPED]}

  evaluator = miou.MIoUEvaluator(on_host(predictor), data=spec, num_classes=classes,
                                 num_pictures=2)
  result = evaluator.run(None)
  _, batches = pipeline.eval_batches(spec)
  labels, predictions = [], []
  for batch in batches:
    out = predictor(None, batch)
    rows = np.asarray(batch[MASK]) > 0
    labels += list(out["label"][rows])
    predictions += list(out["prediction"][rows])
  expected = _numpy_metrics(np.asarray(labels), np.asarray(predictions), classes)
  assert len(labels) == 5 and result["skipped_examples"] == 0
  np.testing.assert_allclose(result["mIoU"], expected[2], rtol=1e-12)
  pictures = evaluator.pictures()
  assert sorted(pictures) == ["segmentation/00000", "segmentation/00001"]
  assert pictures["segmentation/00000"].dtype == np.uint8
