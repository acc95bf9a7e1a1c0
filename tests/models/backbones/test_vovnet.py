"""VoVNet / eSE-VoVNet: exact parameter counts (timm), ceil-mode pooling, levels,
training through the trainer, and the config file."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
import torch

from vision_jax import config as config_lib, metrics, train
from vision_jax.models import retinanet
from vision_jax.models.backbones import vovnet
from tiny_config import tiny_config

CONFIG = "configs/vovnet/imagenet.py"
# A two-stage eSE-VoVNet small enough to train in seconds: residual (2 blocks in
# stage 1), eSE, depthwise, a reduction conv.
SMALL = {"blocks": (1, 2), "layers": 2, "stem_features": (8, 8, 16), "mid_features": (8, 16),
         "out_features": (16, 32)}


def _count(model):
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3))))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("ctor, expected", [
    (vovnet.vovnet39a, 22_600_296),
    (vovnet.vovnet57a, 36_640_296),
    (vovnet.ese_vovnet19b_dw, 6_543_080),
    (vovnet.ese_vovnet39b, 24_568_936),
    (vovnet.ese_vovnet57b, 38_608_936),
])
def test_parameter_counts_are_timms(ctor, expected):
  assert _count(ctor(num_classes=1000)) == expected
  # The backbone drops just the 1024 -> 1000 classifier.
  assert _count(ctor(features_only=True)) == expected - 1024 * 1000 - 1000


@pytest.mark.parametrize("hw", [(2, 3), (7, 7), (8, 6), (25, 33), (56, 13)])
def test_max_pool_ceil_is_torch_ceil_mode(hw):
  x = np.random.default_rng(0).normal(size=(1, 3, *hw)).astype(np.float32)
  want = torch.nn.MaxPool2d(3, 2, ceil_mode=True)(torch.from_numpy(x)).numpy()
  got = vovnet.max_pool_ceil(jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_array_equal(np.asarray(got).transpose(0, 3, 1, 2), want)


def _shapes(model, x):
  """(variables, outputs) as shapes: no compile."""
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  return variables, jax.eval_shape(model.apply, variables, x)


def _variables(model, x, seed=0):
  """Random parameters and BatchNorm statistics without compiling an init."""
  rng = np.random.default_rng(seed)
  def fill(path, leaf):
    name = jax.tree_util.keystr(path)
    if "batch_stats" in name:
      return np.full(leaf.shape, 1.0 if "var" in name else 0.0, np.float32)
    return rng.normal(0.0, 0.3, leaf.shape).astype(np.float32)
  return jax.tree_util.tree_map_with_path(fill, _shapes(model, x)[0])


@pytest.mark.parametrize("stem_level", [True, False])
def test_declared_levels_are_the_outputs(stem_level):
  model = vovnet.ese_vovnet19b_dw(features_only=True, stem_level=stem_level, **{
      **SMALL, "blocks": (1, 1, 1, 1), "mid_features": (8, 8, 8, 8),
      "out_features": (8, 16, 24, 32)})
  _, (levels, aux) = _shapes(model, jnp.ones((1, 70, 45, 3)))
  declared = model.feature_levels()
  names = ["C1"] * stem_level + ["C2", "C3", "C4", "C5"]
  assert list(levels) == list(declared) == names
  # 70 x 45 -> stem 35 x 23 -> 18 x 12 -> ceil-mode pools 9 x 6, 4 x 3, 2 x 1.
  sides = {"C1": (35, 23), "C2": (18, 12), "C3": (9, 6), "C4": (4, 3), "C5": (2, 1)}
  for name, level in declared.items():
    assert levels[name].shape == (1, *sides[name], level.channels)
  assert [declared[n].stride for n in names] == [2, 4, 8, 16, 32][1 - stem_level:]
  assert "pre_logits" not in aux


def test_a_retinanet_reads_c3_to_c5_with_or_without_c1():
  for stem_level in (False, True):
    detector = retinanet.RetinaNet(
        backbone="ese_vovnet19b_dw", num_classes=3, fpn_features=8, head_features=8,
        head_convs=1, backbone_args={**SMALL, "blocks": (1, 1, 1, 1), "stem_level": stem_level,
                                     "mid_features": (8, 8, 8, 8), "out_features": (8, 8, 8, 8)})
    assert [l.stride for l in detector.backbone_levels().values()] == [2, 4, 8, 16, 32][
        1 - stem_level:]
    _, (_, aux) = _shapes(detector, jnp.zeros((1, 64, 96, 3)))
    assert [p.shape[1:3] for p in aux["fpn"]] == [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]


def test_bfloat16_compute_keeps_float32_params():
  model = vovnet.ese_vovnet19b_dw(num_classes=3, dtype=jnp.bfloat16, **SMALL)
  variables, (logits, aux) = _shapes(model, jnp.ones((1, 16, 16, 1)))
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  assert aux["stage1"].dtype == jnp.bfloat16 and logits.dtype == jnp.float32
  assert logits.shape == (1, 3) and aux["pre_logits"].shape == (1, 32)


@pytest.mark.parametrize("norm_eval", [False, True])
def test_train_mode_updates_batch_stats_unless_norm_eval(norm_eval):
  x = jax.random.normal(jax.random.PRNGKey(1), (4, 16, 16, 1)) * 3 + 2
  model = vovnet.ese_vovnet39b(num_classes=3, norm_eval=norm_eval, drop_path_rate=0.5, **SMALL)
  variables = _variables(model, x)
  step = jax.jit(lambda v, x, rng: model.apply(v, x, train=True, mutable=["batch_stats"],
                                               rngs={"dropout": rng}))
  _, updated = step(variables, x, jax.random.PRNGKey(2))
  before = variables["batch_stats"]["stem0"]["bn"]["mean"]
  after = updated["batch_stats"]["stem0"]["bn"]["mean"]
  assert np.allclose(before, after) == norm_eval


def test_training_on_digits_lowers_the_loss(tmp_path):
  c = tiny_config(**{"total_steps": 40, "log_every_steps": 10, "checkpoint_every_steps": 40,
                     "optimizer.learning_rate": 0.1, "mesh.data": 1})
  # One stage of two blocks: the second adds its input, eSE on the last.
  c.model = ml_collections.ConfigDict({
      "name": "ese_vovnet39b", "num_classes": 10, "blocks": (2,), "layers": 1,
      "stem_features": (8, 8, 16), "mid_features": (16,), "out_features": (16,)})
  train.run(c, str(tmp_path))  # On the 8x8 scans: the stem's 2x2 map is C2.
  rows = [r for r in metrics.read_metrics(tmp_path) if "train/loss" in r]
  assert [r["step"] for r in rows] == [10, 20, 30, 40]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 0.3


@pytest.mark.parametrize("arg", ["variant=39a", "variant=57a", "variant=19b_dw", "variant=39b",
                                 "variant=57b,batch=256", "demo"])
def test_configs_validate(arg):
  config = config_lib.load(f"{CONFIG}:{arg}")
  config_lib.validate(config)
  if arg.startswith("variant=57b"):
    assert "resize_small(269, method='bicubic')|central_crop(256)" in config.data.pp_eval
    assert "normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))" in config.data.pp_train
    assert config.optimizer.learning_rate == pytest.approx(0.1)
  elif arg != "demo":
    assert "resize_small(256, method='bicubic')|central_crop(224)" in config.data.pp_eval


def test_a_bad_variant_is_named():
  with pytest.raises(config_lib.ConfigError, match=r"variant='39c'.*'19b_dw'"):
    config_lib.load(f"{CONFIG}:variant=39c")
