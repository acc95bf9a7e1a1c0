"""ConnNet's connectivity cube on a hand-made mask, its aggregation back to a
saliency map, the loss against a NumPy BCE, and the assembled model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models.connnet import ConnNet, NonLocalBlock
from vision_jax.tasks.saliency import connectivity
from vision_jax.tasks.saliency.task import ConnectivityTask

MASK = np.array([[0, 1, 1, 0, 0],
                 [1, 1, 1, 0, 255],
                 [0, 1, 0, 0, 1],
                 [0, 0, 0, 1, 1]], np.uint8)

# EXPECTED[k][y][x]: (y, x) and (y, x) + OFFSETS[k] both salient, worked out by hand.
EXPECTED = np.array([
    [[0, 0, 0, 0, 0], [0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0]],  # (-1, -1)
    [[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1]],  # (-1, 0)
    [[0, 0, 0, 0, 0], [1, 1, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]],  # (-1, +1)
    [[0, 0, 1, 0, 0], [0, 1, 1, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]],  # (0, -1)
    [[0, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 1, 0]],  # (0, +1)
    [[0, 1, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],  # (+1, -1)
    [[0, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]],  # (+1, 0)
    [[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],  # (+1, +1)
], np.float32).transpose(1, 2, 0)


def test_offsets_are_the_8_neighbours_in_opposite_pairs():
  assert len(set(connectivity.OFFSETS)) == 8 and (0, 0) not in connectivity.OFFSETS
  assert all(max(abs(dy), abs(dx)) == 1 for dy, dx in connectivity.OFFSETS)
  for k, (dy, dx) in enumerate(connectivity.OFFSETS):
    assert connectivity.OFFSETS[7 - k] == (-dy, -dx)


def test_targets_of_a_hand_made_mask_entry_by_entry():
  targets, weights = connectivity.connectivity_targets(MASK[None])
  assert targets.shape == weights.shape == (1, 4, 5, 8)
  np.testing.assert_array_equal(targets[0], EXPECTED)
  # Undetermined: only the two entries joining the ignored (1, 4) to the salient (2, 4).
  expected_weights = np.ones((4, 5, 8), np.float32)
  expected_weights[1, 4, 6] = expected_weights[2, 4, 1] = 0
  np.testing.assert_array_equal(weights[0], expected_weights)
  # The ignored pixel's other entries are known 0 (background or outside neighbours).
  assert float(jnp.sum(targets[0, 1, 4])) == 0.0


def test_aggregating_the_targets_of_a_mask_recovers_it():
  mask = np.where(MASK == 255, 0, MASK)
  rng = np.random.default_rng(0)
  blobs = (rng.random((3, 9, 11)) < 0.5).astype(np.uint8)
  for m in (mask[None], blobs):
    targets, _ = connectivity.connectivity_targets(m)
    salient = m > 0
    has_neighbour = np.zeros_like(salient)
    count = np.zeros(m.shape, np.float32)
    for offset in connectivity.OFFSETS:
      n = np.asarray(connectivity.neighbour(jnp.asarray(salient), offset, False))
      has_neighbour |= salient & n
      count += salient & n
    recovered = salient & has_neighbour  # Isolated salient pixels have no connection.
    np.testing.assert_array_equal(connectivity.aggregate(targets, "max"), recovered)
    mean = np.asarray(connectivity.aggregate(targets))
    np.testing.assert_allclose(mean, count / 8.0)
    np.testing.assert_array_equal(mean > 0, recovered)
  assert np.all(recovered[salient & (count == 0)] == 0) and np.any(salient & (count == 0))
  with pytest.raises(ValueError, match="aggregation"):
    connectivity.aggregate(targets, "sum")


def test_loss_is_the_weighted_bce_and_its_gradients_are_finite():
  labels = np.stack([MASK, np.flipud(MASK)])
  batch = {"segmentation": labels, "mask": np.array([1.0, 1.0], np.float32)}
  logits = jax.random.normal(jax.random.PRNGKey(0), (2, 4, 5, 8)) * 3.0
  task = ConnectivityTask()
  loss, metrics = task.loss({"connectivity": logits}, {}, batch)
  targets, weights = (np.asarray(a) for a in connectivity.connectivity_targets(labels))
  z = np.asarray(logits, np.float64)
  bce = np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))
  np.testing.assert_allclose(loss, np.sum(bce * weights) / np.sum(weights), rtol=1e-5)
  assert np.sum(weights) == 2 * 4 * 5 * 8 - 4
  np.testing.assert_allclose(metrics["connectivity_accuracy"],
                             np.sum(((z > 0) == (targets > 0)) * weights) / np.sum(weights),
                             rtol=1e-6)
  grad = jax.jit(jax.grad(lambda x: task.loss({"connectivity": x}, {}, batch)[0]))
  for scale in (1.0, 1e4):  # Saturated logits too.
    grads = grad(logits * scale)
    assert np.all(np.isfinite(grads)) and float(jnp.max(jnp.abs(grads))) > 0
    assert float(jnp.abs(grads[0, 1, 4, 6])) == 0.0  # Undetermined entries get none.


def test_predict_resizes_and_aggregates_at_the_label_size():
  batch = {"segmentation": np.zeros((1, 8, 10), np.uint8), "mask": np.ones(1, np.float32)}
  logits = jnp.zeros((1, 2, 5, 8)).at[..., 0].set(jnp.log(3.0))  # p = 3/4 on one channel.
  out = ConnectivityTask().predict({"connectivity": logits}, {}, batch)
  assert out["saliency"].shape == (1, 8, 10) and out["label"].shape == (1, 8, 10)
  np.testing.assert_allclose(out["saliency"], (0.75 + 7 * 0.5) / 8, rtol=1e-6)
  out = ConnectivityTask("max").predict({"connectivity": logits}, {}, batch)
  np.testing.assert_allclose(out["saliency"], 0.75, rtol=1e-6)


def test_nonlocal_block_starts_as_identity_and_mixes_all_positions():
  x = jax.random.normal(jax.random.PRNGKey(1), (1, 3, 4, 6))
  block = NonLocalBlock()
  variables = block.init(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(block.apply(variables, x), x)
  params = {"params": jax.tree.map(lambda p: p + 0.1, variables["params"])}
  moved = x.at[0, 2, 3].add(1.0)  # The pixel farthest from (0, 0).
  assert float(jnp.max(jnp.abs(block.apply(params, moved)[0, 0, 0] -
                               block.apply(params, x)[0, 0, 0]))) > 1e-4


def test_connnet_on_a_tiny_resnet_gives_quarter_resolution_logits():
  model = ConnNet(backbone="resnet18", backbone_args={"width": 4}, decoder_features=8,
                  stream_features=4, head_features=8)
  assert model.feature_levels() == {"connectivity": connectivity_level(4)}
  images = jnp.ones((2, 32, 48, 3))
  levels = []

  def forward():  # Shapes only (no compute): the aux sizes are static while tracing.
    (outputs, aux), variables = model.init_with_output(jax.random.PRNGKey(0), images)
    levels.append(aux["levels"])
    return outputs, variables

  outputs, variables = jax.eval_shape(forward)
  assert set(variables["params"]) == {"backbone", "nonlocal", "fpn", "stream0", "stream1",
                                      "stream2", "stream3", "head"}
  assert variables["params"]["head"]["logits"]["kernel"].shape == (1, 1, 8, 8)
  assert variables["params"]["nonlocal"]["theta"]["kernel"].shape == (1, 1, 32, 16)
  assert outputs["connectivity"].shape == (2, 8, 12, 8)
  assert outputs["connectivity"].dtype == jnp.float32
  assert levels[0] == ((8, 12), (4, 6), (2, 3), (1, 2))
  ConnectivityTask().check(model)
  with pytest.raises(ValueError, match="ConnNet needs feature strides"):
    ConnNet(backbone="resnet18", in_strides=(2, 4)).feature_levels()


def connectivity_level(stride):
  from vision_jax.models.features import Level  # pylint: disable=import-outside-toplevel
  return Level(stride, 8)
