"""Terminator: the CIFAR-10 network's parameter count (ours, no official count
exists) from the official layer list, block wiring, G-IBS, the slow neural
loss, configs, and a short digits run through the trainer."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import saved_state
from tiny_config import tiny_config

from vision_jax import config as config_lib, metrics, train
from vision_jax.models import terminator, terminator_blocks
from vision_jax.tasks.base import MODEL_LOSSES

# A 3-block network on 8x8 grey images: every branch, one earlier-output concat.
SMALL = dict(image_size=8, in_channels=(1, 4, 8), bottleneck_factors=(4, 2, 2),
             num_concat_pre=(0, 0, 1), dropout=(0.0, 0.05, 0.05), global_layers=(1, 1, 1),
             global_hidden=8, local_hidden=4, local_layers=1, local_kernel_sizes=(3, 5, 3, 5),
             hci_hidden=4, hi_hidden_c=4, hi_hidden_s=4, interact_layers=1, gibs_groups=4)


def _lin(i, o):
  return i * o + o


def _magnet(d, hidden, layers, out, grid):
  """Official MAGNet: L + 1 Gabor filters d -> hidden, L linears, output, grid bias."""
  return (layers + 1) * _lin(d, hidden) + layers * _lin(hidden, hidden) + _lin(hidden, out) + grid


def _official_count(in_channels, factors, concat_pre, global_layers, size=32, classes=10):
  """Parameters of the official layer list (fast_multi_branch.py, magnet.py,
  rgu.py, local_conv.py, hyper_interact.py, sfne_block.py, cfg/config.yaml)."""
  total = 0
  for c, f, pre, layers in zip(in_channels, factors, concat_pre, global_layers):
    n = _magnet(2, 64, layers, c, size * size)  # SlowNet_G
    for k in (3, 9, 5, 7):  # SlowNet_L (MAGNet_L + context convs) and LocalConv, bias_i
      n += _magnet(2, 32, 2, c, k * k) + _lin(c, 32) + 3 * _lin(32, 32) + _lin(c, c) + 1
    n += _lin(c, c) + _lin(c * (10 + pre), c * f)  # channel mixer, bottleneck
    n += 2 * (4 * _lin(c, c) + size * size)  # two RGUs with their S x S bias
    n += _magnet(1, 32, 2, 1, c)  # hyper-channel interaction
    n += _magnet(1, 16, 2, 1, c) + _magnet(2, 64, 2, 1, size * size)  # hyper interaction
    total += n + 1  # SFNE bias
  return total + _lin(in_channels[-1] * factors[-1], classes)


def _count(model, shape):
  shapes = jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0),
                                              "dropout": jax.random.PRNGKey(0)},
                                             jnp.zeros(shape)))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_cifar10_parameter_count():
  """1,336,855 (ours; no official count exists)."""
  expected = _official_count((3, 12, 36, 72, 144), (4, 3, 2, 2, 2), (0, 0, 1, 1, 2),
                             (3, 2, 2, 2, 2))
  assert expected == 1_336_855
  assert _count(terminator.terminator(), (1, 32, 32, 3)) == expected


def test_forward_shapes_and_wiring():
  model = terminator.terminator(num_classes=7, **SMALL)
  x = jnp.zeros((2, 8, 8, 1))
  init = lambda: model.init({"params": jax.random.PRNGKey(0)}, x)
  params = jax.eval_shape(init)["params"]
  # The last block concatenates block 1's output: 10 branches + 1, each 8 wide.
  assert params["block3"]["bottleneck"]["kernel"].shape == (88, 16)
  assert params["block2"]["bottleneck"]["kernel"].shape == (40, 8)
  assert params["block1"]["slow_global"]["grid_bias"].shape == (8, 8)
  assert params["block1"]["local2"]["slow"]["magnet"]["grid_bias"].shape == (5, 5)
  logits, aux = jax.eval_shape(lambda: model.apply(init(), x))
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  assert [aux[f"block{i}"].shape for i in (1, 2, 3)] == [(2, 8, 8, 4), (2, 8, 8, 8), (2, 8, 8, 16)]
  assert aux["global_kernel3"].shape == (8, 8, 8) and aux["pre_logits"].shape == (2, 16)


def test_slow_neural_loss_matches_numpy():
  """Σ_{j<i} mean((tile(K_j, Π_{j<=m<i} f_m) - K_i)^2)."""
  rng = np.random.default_rng(0)
  k = [rng.normal(size=(4, 4, c)) for c in (2, 4, 12)]
  loss = terminator.slow_neural_loss([jnp.asarray(a, jnp.float32) for a in k], (2, 3, 2))
  ref = (np.mean((np.tile(k[0], (1, 1, 2)) - k[1]) ** 2) + np.mean((np.tile(k[0], (1, 1, 6)) - k[2]) ** 2)
         + np.mean((np.tile(k[1], (1, 1, 3)) - k[2]) ** 2))
  np.testing.assert_allclose(loss, ref, rtol=1e-5)


def test_the_model_hands_its_weighted_slow_loss_to_the_task():
  model = terminator.terminator(num_classes=7, slow_loss_weight=0.5, **SMALL)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 8, 8, 1)), jnp.float32)
  variables = model.init(jax.random.PRNGKey(0), x)
  _, aux = model.apply(variables, x)
  kernels = [aux[f"global_kernel{i}"] for i in (1, 2, 3)]
  want = terminator.slow_neural_loss(kernels, SMALL["bottleneck_factors"])
  assert float(want) > 0  # Three blocks: the kernels of earlier blocks differ from later ones'.
  np.testing.assert_allclose(aux[MODEL_LOSSES]["slow"], 0.5 * want, rtol=1e-6)


def test_group_ibs_matches_numpy():
  x = np.random.default_rng(0).normal(2.0, 3.0, size=(3, 4, 5, 6))
  out = np.asarray(terminator_blocks.group_ibs(jnp.asarray(x, jnp.float32), 3))
  for g, axes in enumerate(((0, 1, 2), (1, 2), (0, 1, 2))):  # batch, instance, batch
    part = x[..., 2 * g:2 * g + 2]
    mean, var = part.mean(axes, keepdims=True), part.var(axes, keepdims=True)
    np.testing.assert_allclose(out[..., 2 * g:2 * g + 2], (part - mean) / np.sqrt(var + 1e-5),
                               rtol=1e-4, atol=1e-4)
  with pytest.raises(ValueError, match="equal groups"):
    terminator_blocks.group_ibs(jnp.ones((1, 2, 2, 5)), 3)


def test_bad_shapes_are_errors():
  x = jnp.zeros((1, 8, 8, 1))
  with pytest.raises(ValueError, match="built for 8x8x1"):
    jax.eval_shape(lambda: terminator.terminator(**SMALL).init(jax.random.PRNGKey(0),
                                                               jnp.zeros((1, 16, 16, 1))))
  with pytest.raises(ValueError, match="in_channels"):
    jax.eval_shape(lambda: terminator.terminator(**{**SMALL, "in_channels": (1, 4, 6)}).init(
        jax.random.PRNGKey(0), x))


def test_trains_on_digits(tmp_path):
  """A 1-block network (every branch), 20 steps through the trainer: the loss falls."""
  config = tiny_config(**{"model.name": "terminator", "optimizer.name": "adamw",
                          "optimizer.learning_rate": 0.02, "mesh.data": 1})
  for key in ("width", "stage_sizes", "small_input"):  # tiny_config's ResNet arguments.
    del config.model[key]
  config.model.update({**SMALL, "in_channels": (1,), "bottleneck_factors": (4,),
                       "num_concat_pre": (0,), "dropout": (0.05,), "global_layers": (1,)})
  config.data.eval_batch_size = 120  # Divisible by the 8 test devices.
  final = train.run(config, str(tmp_path))
  rows = [r for r in metrics.read_metrics(tmp_path) if "train/loss" in r]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 0.05
  # Logged as a loss term; one block has no earlier block to compare with: exactly 0.
  assert [r["train/loss/slow"] for r in rows] == [0.0] * len(rows)
  params = jax.tree.leaves(saved_state(tmp_path)["params"])
  assert all(np.isfinite(p).all() for p in params)
  assert final["eval/top1_accuracy"] > 0.1


@pytest.mark.parametrize("arg", ["", "demo", "variant=cifar10"])
def test_configs_validate(arg):
  config_lib.validate(config_lib.load(f"configs/terminator/cifar.py:{arg}"))


def test_bad_variant_is_config_error():
  with pytest.raises(config_lib.ConfigError, match="choose one of"):
    config_lib.load("configs/terminator/cifar.py:variant=cifar100")
