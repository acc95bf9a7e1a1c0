"""MAE and max-F of the saliency evaluator against a direct NumPy computation,
on device sums and through a split; the loss split over two micro-batches
with the step's normalizers equals the whole batch's."""
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.data import pipeline
from vision_jax.evaluators.base import on_host
from vision_jax.tasks.saliency.evaluator import SaliencyEvaluator
from vision_jax.tasks.saliency.task import ConnectivityTask


def reference(maps, labels, beta2=0.3):
  """Per image MAE over known pixels; P, R per image at t = 0..255 (255 s >= t),
  averaged over images, F of the averages, its max."""
  maes, precisions, recalls = [], [], []
  for s, label in zip(maps, labels):
    known = label != 255
    g, s = label[known] > 0, s[known].astype(np.float64)
    maes.append(np.mean(np.abs(s - g)) if known.any() else 0.0)
    m = 255.0 * s.astype(np.float32)[None] >= np.arange(256)[:, None]  # [t, pixel]
    tp, positives = np.sum(m & g, 1), np.sum(m, 1)
    precisions.append(np.where(positives > 0, tp / np.maximum(positives, 1), 0.0))
    recalls.append(tp / max(g.sum(), 1))
  p, r = np.mean(precisions, 0), np.mean(recalls, 0)
  with np.errstate(invalid="ignore"):
    f = np.nan_to_num((1 + beta2) * p * r / (beta2 * p + r))
  return float(np.mean(maes)), float(np.max(f))


def random_maps(rng, b, h, w):
  labels = (rng.random((b, h, w)) < rng.random((b, 1, 1))).astype(np.uint8)
  labels[rng.random((b, h, w)) < 0.1] = 255
  labels[0] = 0  # An image with no salient pixel: recall 0 at every threshold.
  noise = rng.random((b, h, w))
  maps = np.clip(0.5 * (labels == 1) + 0.6 * noise, 0, 1).astype(np.float32)
  maps[1] = np.round(maps[1] * 4) / 4  # Ties and exact thresholds.
  return maps, labels


def test_device_sums_equal_a_direct_numpy_computation():
  rng = np.random.default_rng(0)
  maps, labels = random_maps(rng, 6, 9, 7)
  evaluator = SaliencyEvaluator(None, data=None)
  real = np.array([1, 1, 1, 1, 1, 0], np.float32)  # The last row is padding.
  sums = jax.jit(evaluator.sums)({"saliency": maps, "label": labels, "mask": real})
  assert {k: v.shape for k, v in sums.items()} == {"mae": (), "precision": (256,),
                                                   "recall": (256,)}
  got = evaluator.metrics({**sums, "counted": 5})
  mae, max_f = reference(maps[:5], labels[:5])
  assert abs(got["mae"] - mae) < 1e-6 and abs(got["max_f"] - max_f) < 1e-6
  assert 0.1 < max_f < 0.95
  other = reference(maps, labels)  # The padding row would change both.
  assert abs(other[0] - mae) > 1e-3 and abs(other[1] - max_f) > 1e-3


def brightness(variables, batch):
  """A 'model' whose saliency is the digit's brightness to a power; label = ink, 255 on faint ink."""
  image = np.asarray(batch["image"], np.float32)[..., 0] / 255.0
  label = np.where(image > 0.3, 1, np.where(image > 0.05, 255, 0)).astype(np.uint8)
  return {"saliency": image ** variables["power"], "label": label, "mask": batch["mask"],
          "skipped": batch["skipped"]}


def test_split_metrics_equal_numpy_over_the_real_images(tmp_path):
  spec = pipeline.DataSpec(name="sklearn_digits", split="test", pp="decode|keep('image')",
                           global_batch=64, data_dir=str(tmp_path))
  evaluator = SaliencyEvaluator(on_host(brightness), data=spec)
  outs = [brightness({"power": 2.0}, b) for b in pipeline.eval_batches(spec)[1]]
  real = np.concatenate([o["mask"] for o in outs]) > 0
  maps = np.concatenate([o["saliency"] for o in outs])[real]
  labels = np.concatenate([o["label"] for o in outs])[real]
  assert len(maps) == 359
  mae, max_f = reference(maps, labels)
  got = evaluator.run({"power": 2.0})
  assert set(got) == {"mae", "max_f", "skipped_examples"} and got["skipped_examples"] == 0
  assert abs(got["mae"] - mae) < 1e-6 and abs(got["max_f"] - max_f) < 1e-6
  assert max_f > 0.9 and mae < 0.2
  # Records the pipeline skipped are left out of the means and reported.
  totals = {"counted": 2, "skipped": 3, "mae": 0.5, "precision": np.ones(256),
            "recall": np.full(256, 0.5)}
  skipped = evaluator.metrics(totals)
  assert skipped["skipped_examples"] == 3 and skipped["mae"] == 0.25


def test_two_micro_batches_with_step_normalizers_equal_the_whole_batch():
  rng = np.random.default_rng(1)
  labels = (rng.random((4, 6, 8)) < 0.5).astype(np.uint8)
  labels[1, :3] = 255  # Halves with different numbers of determined entries.
  batch = {"segmentation": labels, "mask": np.array([1, 1, 1, 0], np.float32)}
  logits = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 4, 8))
  task = ConnectivityTask()
  halves = [jax.tree.map(lambda x, i=i: x[2 * i:2 * i + 2], batch) for i in (0, 1)]
  parts = [logits[:2], logits[2:]]
  step = jax.tree.map(lambda a, b: a + b, *(task.normalizers({}, h) for h in halves))
  whole = task.normalizers({}, batch)
  assert float(step["entries"]) == float(whole["entries"]) and float(whole["examples"]) == 3
  loss_of = jax.jit(jax.value_and_grad(
      lambda z, b, n: task.loss({"connectivity": z}, {}, b, n), has_aux=True))
  (whole_loss, whole_metrics), whole_grad = loss_of(logits, batch, whole)
  shares = [loss_of(z, h, step) for z, h in zip(parts, halves)]
  np.testing.assert_allclose(shares[0][0][0] + shares[1][0][0], whole_loss, rtol=1e-6)
  np.testing.assert_allclose(shares[0][0][1]["connectivity_accuracy"]
                             + shares[1][0][1]["connectivity_accuracy"],
                             whole_metrics["connectivity_accuracy"], rtol=1e-6)
  np.testing.assert_allclose(jnp.concatenate([g for _, g in shares]), whole_grad, rtol=1e-5,
                             atol=1e-9)
  np.testing.assert_allclose(whole_loss, task.loss({"connectivity": logits}, {}, batch)[0],
                             rtol=1e-6)  # Default normalizers: the batch's own.
  # Each half's own mean would not add up: the normalizers matter.
  own = [loss_of(z, h, task.normalizers({}, h))[0][0] for z, h in zip(parts, halves)]
  assert abs(float(own[0] + own[1]) / 2 - float(whole_loss)) > 1e-3
