"""The detection task's loss and inference on a tiny RetinaNet-PVT that
overfits one batch, accumulation, and its checks against the model."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax.batch import MASK
from vision_jax.models import retinanet
from vision_jax.tasks.base import StepContext
from vision_jax.tasks.detection.task import DetectionTask

TINY_BACKBONE = {"embed_dims": (8, 16, 32, 64), "num_heads": (1, 1, 1, 1), "depths": (1, 1, 1, 1),
                 "mlp_ratios": (2, 2, 2, 2), "drop_path_rate": 0.0}


def _params(model, hw=(224, 224)):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3)),
                                           train=False))["params"]


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _batch():
  boxes = np.zeros((2, 4, 4), np.float32)
  classes = np.full((2, 4), -1, np.int32)
  boxes[0, :2] = [[4, 6, 30, 40], [34, 30, 60, 58]]
  classes[0, :2] = [0, 2]
  boxes[1, 0] = [10, 10, 50, 34]
  classes[1, 0] = 1
  rng = np.random.default_rng(0)
  images = rng.normal(0, 0.1, (2, 64, 64, 3)).astype(np.float32)
  for b in range(2):  # Paint each object in a colour of its class.
    for box, cls in zip(boxes[b], classes[b]):
      if cls >= 0:
        x1, y1, x2, y2 = box.astype(int)
        images[b, y1:y2, x1:x2, cls] = 1.0
  return {"image": jnp.asarray(images), "boxes": jnp.asarray(boxes),
          "classes": jnp.asarray(classes),
          "image/size": jnp.asarray([[64, 64], [48, 64]], jnp.int32),
          "image/id": jnp.asarray([7, 9], jnp.int32),
          "image/scale": jnp.ones((2, 2), jnp.float32), MASK: jnp.ones((2,), jnp.float32)}


def _tiny():
  model = retinanet.RetinaNet(backbone="pvt_tiny", backbone_args=TINY_BACKBONE, num_classes=3,
                              fpn_features=32, head_features=32, head_convs=2)
  return model, DetectionTask(num_classes=3)


def test_loss_ignores_masked_examples_and_normalises_by_positives():
  model, task = _tiny()
  batch = _batch()
  variables = model.init(jax.random.PRNGKey(0), batch["image"])
  outputs, aux = model.apply(variables, batch["image"])
  loss, m = task.loss(outputs, aux, batch)
  assert np.isfinite(loss) and m["positives_per_image"] > 1
  # Example 1 masked out: its boxes and pixels no longer matter.
  masked = dict(batch, **{MASK: jnp.asarray([1.0, 0.0])})
  changed = dict(masked, boxes=masked["boxes"].at[1, 0].set(jnp.asarray([0., 0., 20., 20.])))
  a = task.loss(outputs, aux, masked)[0]
  b = task.loss(outputs, aux, changed)[0]
  assert a == b and a != loss
  # At init every anchor scores ~0.01, so the focal term is ~ sum over weighted anchors of
  # (1 - 0.25) 0.01^2 -log(0.99) per class divided by the positives.
  t = task.targets(task.anchors(aux["levels"]), aux["levels"], batch)
  negatives = float(jnp.sum(t["cls_weights"]) - jnp.sum(t["num_pos"]))
  normaliser = float(jnp.sum(jnp.maximum(t["num_pos"], 1)))
  expected_negative_part = negatives * 3 * 0.75 * 0.01**2 * -math.log(0.99) / normaliser
  assert 0.5 * expected_negative_part < m["cls_loss"]


def test_tiny_retinanet_overfits_one_batch_and_finds_the_boxes():
  model, task = _tiny()
  batch = _batch()
  params = model.init(jax.random.PRNGKey(0), batch["image"])["params"]
  tx = optax.adam(2e-3)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    def loss_fn(p):
      outputs, aux = model.apply({"params": p}, batch["image"], train=True,
                                 rngs={"dropout": jax.random.PRNGKey(1)})
      return task.loss(outputs, aux, batch)[0]
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(300):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.1 * losses[0]
  outputs, aux = model.apply({"params": params}, batch["image"])
  pred = jax.device_get(task.predict(outputs, aux, batch))
  assert pred["boxes"].shape == (2, 100, 4) and pred["classes"].shape == (2, 100)
  np.testing.assert_array_equal(pred["image/id"], [7, 9])
  for b in range(2):
    for box, cls in zip(np.asarray(batch["boxes"][b]), np.asarray(batch["classes"][b])):
      if cls < 0:
        continue
      hits = [i for i in range(100) if pred["classes"][b, i] == cls]
      assert hits, f"class {cls} not detected in image {b}"
      top = hits[0]  # Highest-scoring detection of that class.
      x1, y1 = np.maximum(box[:2], pred["boxes"][b, top, :2])
      x2, y2 = np.minimum(box[2:], pred["boxes"][b, top, 2:])
      inter = max(x2 - x1, 0) * max(y2 - y1, 0)
      union = np.prod(box[2:] - box[:2]) + np.prod(pred["boxes"][b, top, 2:] - pred["boxes"][b, top, :2]) - inter
      assert inter / union > 0.7 and pred["scores"][b, top] > 0.5
    # Detections are clipped to the image's valid size (image 1 is 48 rows high).
    assert pred["boxes"][b, :, 3].max() <= float(batch["image/size"][b, 0])
  assert np.all(np.diff(pred["scores"], axis=1) <= 0)  # Sorted by score.


def _varied_batch(n=8, size=64, seed=3):
  """`n` images with 0 to 3 objects each (so the micro-batches of an
  accumulation step have different numbers of positives); the last is padding."""
  rng = np.random.default_rng(seed)
  boxes = np.zeros((n, 4, 4), np.float32)
  classes = np.full((n, 4), -1, np.int32)
  for b in range(n):
    for k in range(b % 4):
      x1, y1 = rng.uniform(0, size - 24, 2)
      w, h = rng.uniform(8, 24, 2)
      boxes[b, k], classes[b, k] = [x1, y1, x1 + w, y1 + h], rng.integers(0, 3)
  return {"image": jnp.asarray(rng.normal(0, 1, (n, size, size, 3)).astype(np.float32)),
          "boxes": jnp.asarray(boxes), "classes": jnp.asarray(classes),
          "image/size": jnp.full((n, 2), size, jnp.int32),
          MASK: jnp.asarray([1.0] * (n - 1) + [0.0]), "skipped": jnp.zeros((n,), jnp.int32)}


def test_gradient_accumulation_equals_the_whole_batch_step():
  from vision_jax import steps  # pylint: disable=import-outside-toplevel
  model, task = _tiny()
  batch = _varied_batch()
  tx, schedule = optax.sgd(1.0), optax.constant_schedule(1.0)  # New params = params - grads.
  state = steps.make_init(model, tx, (jax.ShapeDtypeStruct((64, 64, 3), jnp.float32),), seed=0)()
  micro = jax.tree.map(lambda x: np.asarray(x)[np.arange(8).reshape(2, 4).T], batch)
  ctx = StepContext(model, {}, jax.random.PRNGKey(0))
  aux = steps.static_aux(task, ctx, state["params"], jax.tree.map(lambda x: x[0], micro))
  positives = [float(task.normalizers(aux, jax.tree.map(lambda x: x[i], micro))["positives"])
               for i in range(4)]
  assert len(set(positives)) > 1  # Per-micro-batch normalisation would weight them differently.
  out = {k: jax.jit(steps.make_train_step(model, task, tx, schedule, k))(state, batch)
         for k in (1, 4)}
  (whole, m1), (accumulated, m4) = out[1], out[4]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5),
               whole["params"], accumulated["params"])
  for key in ("train/loss", "train/cls_loss", "train/box_loss", "train/positives_per_image",
              "train/grad_norm"):
    np.testing.assert_allclose(m4[key], m1[key], rtol=1e-5)
  assert float(m1["train/positives_per_image"]) > 0


def test_task_and_model_that_disagree_fail_before_compute():
  from vision_jax import config as config_lib, train  # pylint: disable=import-outside-toplevel
  from configs import pvt_coco  # pylint: disable=import-outside-toplevel
  c = pvt_coco.get_config()
  c.task.scales_per_octave = 2
  with pytest.raises(config_lib.ConfigError, match=r"'model.num_anchors' = 9 but the task has 6 "
                                                   r"anchors per location"):
    train.build_task(c, train.build_model(c))
  c = pvt_coco.get_config()
  c.task.strides = (8, 16, 32, 64)
  with pytest.raises(config_lib.ConfigError, match=r"pyramid has strides \(8, 16, 32, 64, 128\); "
                                                   r"the task's anchors 'task.strides' are"):
    train.build_task(c, train.build_model(c))
  c.model = config_lib.base_config().model
  with pytest.raises(config_lib.ConfigError, match="detection needs a dense detector that "
                                                   "declares its pyramid.*got ResNet"):
    train.build_task(c, train.build_model(c))
  c = pvt_coco.get_config()
  c.task.num_classes = 6
  with pytest.raises(config_lib.ConfigError, match="'task.num_classes' is taken from "
                                                   "'model.num_classes': set it there only"):
    config_lib.validate(c)


def _loss_curve(dtype, steps_count=40):
  from vision_jax import steps  # pylint: disable=import-outside-toplevel
  model = retinanet.RetinaNet(backbone="pvt_tiny", backbone_args=TINY_BACKBONE, num_classes=3,
                              fpn_features=32, head_features=32, head_convs=2, dtype=dtype)
  task = DetectionTask(num_classes=3)
  batch = _batch()
  batch["skipped"] = jnp.zeros((2,), jnp.int32)
  tx, schedule = optax.adamw(2e-3, weight_decay=1e-4), optax.constant_schedule(2e-3)
  state = steps.make_init(model, tx, (jax.ShapeDtypeStruct((64, 64, 3), jnp.float32),), seed=0)()
  step = jax.jit(steps.make_train_step(model, task, tx, schedule))
  losses = []
  for _ in range(steps_count):
    state, metrics = step(state, batch)
    losses.append(float(metrics["train/loss"]))
  return np.asarray(losses), state


def test_bfloat16_compute_follows_the_float32_loss_curve_with_float32_master_weights():
  f32, _ = _loss_curve(jnp.float32)
  bf16, state = _loss_curve(jnp.bfloat16)
  assert {p.dtype for p in jax.tree.leaves(state["params"])} == {jnp.dtype(jnp.float32)}
  assert {m.dtype for m in jax.tree.leaves(state["opt_state"]) if hasattr(m, "dtype")
          and jnp.issubdtype(m.dtype, jnp.floating)} == {jnp.dtype(jnp.float32)}
  assert f32[-1] < 0.25 * f32[0] and bf16[-1] < 0.25 * bf16[0]
  # The same start to 0.5% (bfloat16 rounding only); then 10-step means within 25%: the
  # curves drift apart by a few steps where the loss falls fastest (16% in one window seen).
  np.testing.assert_allclose(bf16[0], f32[0], rtol=5e-3)
  np.testing.assert_allclose(bf16.reshape(4, 10).mean(1), f32.reshape(4, 10).mean(1), rtol=0.25)
  assert np.abs(bf16 - f32).max() > 1e-3  # The model did compute in bfloat16.
