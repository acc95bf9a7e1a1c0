"""The segmentation task against PyTorch: mmseg's cross-entropy (resize,
ignore index, class weights, both averages), the exact split over
micro-batches, the resize to the original size, and sliding windows against
a direct loop over mmseg's window grid."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.batch import IMAGE, IMAGE_SIZE, MASK, ORIGINAL_SIZE, SEGMENTATION
from vision_jax.tasks.segmentation import resize
from vision_jax.tasks.segmentation.task import SegmentationTask

CLASSES = 5


def _batch(rng, b=4, h=16, w=12):
  labels = rng.integers(0, CLASSES, (b, h, w)).astype(np.uint8)
  labels[rng.random((b, h, w)) < 0.2] = 255
  labels[0, :4] = 7  # Above num_classes: not a class, ignored as mmseg's histograms do.
  mask = np.array([1, 1, 1, 0], np.float32)[:b]
  return {SEGMENTATION: jnp.asarray(labels), MASK: jnp.asarray(mask)}


def _torch_loss(logits, labels, mask, weights, average):
  """mmseg 0.x CrossEntropyLoss: resize, F.cross_entropy(reduction='none'), then
  the mean over every pixel (or, avg_non_ignore, over the labelled ones)."""
  import torch  # pylint: disable=import-outside-toplevel
  t = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(logits)).permute(0, 3, 1, 2),
                                      size=labels.shape[1:], mode="bilinear", align_corners=False)
  target = torch.from_numpy(np.where(np.asarray(labels) >= CLASSES, 255,
                                     np.asarray(labels)).astype(np.int64))
  keep = np.asarray(mask) > 0
  t, target = t[keep], target[keep]
  weight = None if weights is None else torch.tensor(weights, dtype=torch.float32)
  per_pixel = torch.nn.functional.cross_entropy(t, target, weight=weight, reduction="none",
                                                ignore_index=255)
  denominator = per_pixel.numel() if average == "all" else int((target != 255).sum())
  return float(per_pixel.sum() / denominator)


@pytest.mark.parametrize("weights, average", [(None, "all"), ((0.5, 1.0, 2.0, 1.0, 0.3), "all"),
                                              ((0.5, 1.0, 2.0, 1.0, 0.3), "valid")])
def test_loss_is_mmseg_cross_entropy(weights, average):
  rng = np.random.default_rng(0)
  batch = _batch(rng)
  logits = jnp.asarray(rng.normal(size=(4, 4, 3, CLASSES)).astype(np.float32))
  task = SegmentationTask(CLASSES, class_weights=weights, average=average)
  loss, metrics = task.loss({"logits": logits}, {}, batch)
  expected = _torch_loss(logits, batch[SEGMENTATION], batch[MASK], weights, average)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  assert float(metrics["loss/decode"]) == float(loss)


def test_micro_batches_add_up_to_the_batch_loss_with_aux_heads():
  rng = np.random.default_rng(1)
  batch = _batch(rng)
  outputs = {"logits": jnp.asarray(rng.normal(size=(4, 8, 6, CLASSES)).astype(np.float32)),
             "aux_logits": {"aux": jnp.asarray(rng.normal(size=(4, 2, 2, CLASSES)),
                                               jnp.float32)}}
  task = SegmentationTask(CLASSES, average="valid", aux_weights={"aux": 0.4})
  whole, metrics = task.loss(outputs, {}, batch)
  normalizers = task.normalizers({}, batch)
  halves = [jax.tree.map(lambda v, s=s: v[s], (outputs, batch)) for s in (slice(0, 2), slice(2, 4))]
  parts = [task.loss(o, {}, b, normalizers)[0] for o, b in halves]
  np.testing.assert_allclose(float(sum(parts)), float(whole), rtol=1e-6)
  aux_alone = SegmentationTask(CLASSES, average="valid").loss(
      {"logits": outputs["aux_logits"]["aux"]}, {}, batch)[0]
  np.testing.assert_allclose(float(metrics["loss/aux"]), 0.4 * float(aux_alone), rtol=1e-6)
  with pytest.raises(ValueError, match=r"auxiliary heads \['aux'\] without a weight"):
    SegmentationTask(CLASSES).loss(outputs, {}, batch)


@pytest.mark.parametrize("align_corners", [False, True])
def test_logits_reach_the_original_size_as_mmseg_rescales_them(align_corners):
  """Logits of a padded 32x32 canvas: bilinear to the canvas, the input region
  (20x28) cropped, bilinear to the original size (13x37), as mmseg's
  encode_decode + whole_inference(rescale=True)."""
  import torch  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(2, 8, 8, 3)).astype(np.float32)
  sizes, originals = np.array([[20, 28], [32, 32]]), np.array([[13, 37], [40, 24]])
  ours = resize.to_original_size(jnp.asarray(logits), (32, 32), jnp.asarray(sizes),
                                 jnp.asarray(originals), (48, 40), align_corners)
  classes = resize.argmax_at_original_size(jnp.asarray(logits), (32, 32), jnp.asarray(sizes),
                                           jnp.asarray(originals), (48, 40), align_corners,
                                           rows_per_block=7)
  for b in range(2):
    x = torch.from_numpy(logits[b:b + 1]).permute(0, 3, 1, 2)
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear",
                                        align_corners=align_corners)
    x = x[:, :, :sizes[b, 0], :sizes[b, 1]]
    x = torch.nn.functional.interpolate(x, size=tuple(originals[b]), mode="bilinear",
                                        align_corners=align_corners)
    ref = x[0].permute(1, 2, 0).numpy()
    h, w = originals[b]
    np.testing.assert_allclose(np.asarray(ours[b, :h, :w]), ref, atol=1e-5)
    assert not np.asarray(ours[b, h:]).any() and not np.asarray(ours[b, :, w:]).any()
    np.testing.assert_array_equal(np.asarray(classes[b, :h, :w]), ref.argmax(-1))


def _toy_model(x):
  """Logits at stride 2 that depend on each window's content and borders."""
  kernel = jnp.asarray(np.linspace(-1, 1, 3 * CLASSES).reshape(3, CLASSES), jnp.float32)
  y = jnp.einsum("bhwc,ck->bhwk", x, kernel)
  y = y + jnp.cumsum(y, axis=1) * 0.1  # Position inside the window matters.
  return {"logits": jax.lax.reduce_window(y, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 2, 2, 1),
                                          "VALID") / 4}, {}


def _slide_reference(image, size, crop, stride):
  """mmseg slide_inference on the image's input region, in NumPy."""
  import torch  # pylint: disable=import-outside-toplevel
  h, w = size
  total = np.zeros((h, w, CLASSES), np.float32)
  count = np.zeros((h, w, 1), np.float32)
  grids = [max(n - c + s - 1, 0) // s + 1 for n, c, s in zip((h, w), crop, stride)]
  for i in range(grids[0]):
    for j in range(grids[1]):
      y1, x1 = i * stride[0], j * stride[1]
      y2, x2 = min(y1 + crop[0], h), min(x1 + crop[1], w)
      y1, x1 = max(y2 - crop[0], 0), max(x2 - crop[1], 0)
      logits = np.asarray(_toy_model(jnp.asarray(image[None, y1:y2, x1:x2]))[0]["logits"])
      up = torch.nn.functional.interpolate(torch.from_numpy(logits).permute(0, 3, 1, 2),
                                           size=(y2 - y1, x2 - x1), mode="bilinear",
                                           align_corners=False)
      total[y1:y2, x1:x2] += up[0].permute(1, 2, 0).numpy()
      count[y1:y2, x1:x2] += 1
  return total / count


def test_sliding_windows_follow_mmseg_grid_per_image():
  rng = np.random.default_rng(3)
  images = rng.normal(size=(2, 24, 32, 3)).astype(np.float32)
  sizes = np.array([[24, 32], [16, 26]], np.int32)  # The second is padded.
  task = SegmentationTask(CLASSES, mode="slide", crop=(12, 12), stride=(8, 8))
  batch = {IMAGE: jnp.asarray(images), IMAGE_SIZE: jnp.asarray(sizes)}
  outputs, aux = jax.jit(lambda b: task.infer(_toy_model, b))(batch)
  assert aux["windows"].shape == (2, 12) and int(aux["windows"][1].sum()) == 2 * 3
  for b in range(2):
    h, w = sizes[b]
    ref = _slide_reference(images[b], (h, w), (12, 12), (8, 8))
    np.testing.assert_allclose(np.asarray(outputs["logits"][b, :h, :w]), ref, atol=1e-5)
  labels = np.zeros((2, 30, 40), np.uint8)
  predicted = task.predict(outputs, {}, {**batch, SEGMENTATION: jnp.asarray(labels),
                                         ORIGINAL_SIZE: jnp.asarray([[24, 32], [30, 40]])})
  assert predicted["prediction"].shape == (2, 30, 40)
  assert (np.asarray(predicted["prediction"][0, 24:]) == 255).all()


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="average='mean'"):
    SegmentationTask(CLASSES, average="mean")
  with pytest.raises(ValueError, match="needs task.crop and task.stride"):
    SegmentationTask(CLASSES, mode="slide")
  with pytest.raises(ValueError, match="class_weights has 2 entries for 5 classes"):
    SegmentationTask(CLASSES, class_weights=(1.0, 2.0))
