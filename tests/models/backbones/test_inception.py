"""Inception-v4 / Inception-ResNet-v2: exact parameter counts (timm), the declared
feature levels against the real outputs, dtypes, a short digits run through the
trainer, and the config files (reference equality: test_inception_weights.py)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from vision_jax import config as config_lib, metrics, models, train
from vision_jax.models.backbones import inception
from tiny_config import tiny_config

CONFIG = "configs/inception/imagenet.py"


def _init_shapes(model, size=299):
  return jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3))))


@pytest.mark.parametrize("name, expected", [
    ("inception_v4", 42_679_816),         # timm inception_v4
    ("inception_resnet_v2", 55_843_464),  # timm inception_resnet_v2
])
def test_parameter_counts(name, expected):
  _, variables = _init_shapes(models.MODELS.get(name)(num_classes=1000))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables["params"])) == expected


# Spatial sizes of timm's feature maps at 299 (zoo.md: one forward of the reference);
# VALID convs and pools make them smaller than 299 / stride.
@pytest.mark.parametrize("ctor, sizes_at_299", [
    (inception.inception_v4, (147, 73, 35, 17, 8)),
    (inception.inception_resnet_v2, (147, 71, 35, 17, 8)),
])
def test_declared_levels_are_the_real_outputs(ctor, sizes_at_299):
  backbone = ctor(features_only=True)
  declared = backbone.feature_levels()
  assert list(declared) == ["C1", "C2", "C3", "C4", "C5"]
  assert [level.stride for level in declared.values()] == [2, 4, 8, 16, 32]
  (maps, _), variables = _init_shapes(backbone)
  assert "head" not in variables["params"]
  assert list(maps) == list(declared)
  assert [m.shape for m in maps.values()] == [
      (1, s, s, level.channels) for s, level in zip(sizes_at_299, declared.values())]
  (maps, _), _ = _init_shapes(backbone, size=75)  # The smallest input: C5 is 1 x 1.
  assert maps["C5"].shape == (1, 1, 1, 1536)


def test_pooled_features_and_bfloat16_compute_keep_float32_params():
  model = inception.inception_resnet_v2(num_classes=0, dtype=jnp.bfloat16)
  (pooled, aux), variables = _init_shapes(model, size=75)
  assert pooled.shape == (1, 1536) and pooled.dtype == jnp.bfloat16
  assert aux["C3"].dtype == jnp.bfloat16
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  (logits, _), _ = _init_shapes(inception.inception_v4(num_classes=7, dtype=jnp.bfloat16), 75)
  assert logits.shape == (1, 7) and logits.dtype == jnp.float32


def test_repeats_are_constructor_fields():
  _, variables = _init_shapes(inception.inception_resnet_v2(blocks=(2, 1, 0)), size=75)
  params = variables["params"]
  assert {"block35_1", "block35_2", "block17_1", "block8_last"} <= set(params)
  assert not {"block35_3", "block17_2", "block8_1"} & set(params)
  assert params["block35_1"]["conv2d"]["bias"].shape == (320,)  # Up-projections have a bias.
  _, variables = _init_shapes(inception.inception_v4(blocks=(1, 2, 1)), size=75)
  names = set(variables["params"])
  assert {"inception_a1", "inception_b2", "inception_c1", "reduction_b"} <= names
  assert not {"inception_a2", "inception_b3", "inception_c2"} & names


def test_a_shallow_network_learns_the_digits(tmp_path):
  """No repeats (stem, Mixed-5b/6a/7a, the final residual Block8) on digits upsampled to
  the smallest input, 75 px; one device, evaluated on the 0-4 half: the compiles of the
  jitted init (a random draw per conv) and step dominate."""
  c = tiny_config(**{"total_steps": 10, "data.batch_size": 16, "optimizer.learning_rate": 0.02,
                     "mesh.data": 1, "data.eval_split": "test_0to4", "data.eval_batch_size": 180})
  c.model = ml_collections.ConfigDict({"name": "inception_resnet_v2", "num_classes": 10,
                                       "blocks": (0, 0, 0)})
  pp = "decode|resize(75)|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"
  c.data.pp_train = c.data.pp_eval = pp
  train.run(c, str(tmp_path))
  rows = [r for r in metrics.read_metrics(tmp_path) if "train/loss" in r]
  assert [r["step"] for r in rows] == [5, 10]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 0.2


@pytest.mark.parametrize("arg", ["variant=v4", "variant=irv2", "demo"])
def test_configs_validate(arg):
  config_lib.validate(config_lib.load(f"{CONFIG}:{arg}"))


def test_a_bad_variant_names_the_choices():
  with pytest.raises(config_lib.ConfigError, match=r"variant='v3': choose one of \['irv2', 'v4'\]"):
    config_lib.load(f"{CONFIG}:variant=v3")
