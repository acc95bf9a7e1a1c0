"""Mesh construction and regex partition rules on 8 fake CPU devices."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from vision_jax import sharding


def test_eight_fake_devices():
  assert jax.device_count() == 8


def test_mesh_fills_minus_one_axis():
  mesh = sharding.make_mesh({"data": -1, "model": 2})
  assert dict(mesh.shape) == {"data": 4, "model": 2}
  assert dict(sharding.make_mesh({"data": 1, "model": 1}).shape) == {"data": 1, "model": 1}


@pytest.mark.parametrize("axes, message", [
    ({"data": -1, "model": -1}, "Only one mesh axis may be -1"),
    ({"data": -1, "model": 3}, "8 devices cannot be split by mesh axes"),
    ({"data": 4, "model": 4}, "need 16 devices; 8 are available"),
])
def test_mesh_errors(axes, message):
  with pytest.raises(ValueError, match=message):
    sharding.make_mesh(axes)


def test_partition_rules_first_match_wins_and_fit_shapes():
  mesh = sharding.make_mesh({"data": 4, "model": 2})
  tree = {"params": {"head": {"kernel": jnp.zeros((16, 10)), "bias": jnp.zeros((10,))},
                     "conv": {"kernel": jnp.zeros((3, 3, 8, 6))}},
          "step": jnp.zeros((), jnp.int32)}
  rules = [(r".*head/kernel", (None, "model")),  # 10 % 2 == 0: sharded
           (r".*conv/kernel", (None, None, "data", "model")),
           (r".*", ())]
  specs = jax.tree.map(lambda s: s.spec, sharding.tree_shardings(tree, mesh, rules))
  assert specs["params"]["head"]["kernel"] == P(None, "model")
  assert specs["params"]["head"]["bias"] == P()
  assert specs["params"]["conv"]["kernel"] == P(None, None, "data", "model")
  assert specs["step"] == P()
  # A dim the axis does not divide (6 % 4) is replicated instead of failing.
  odd = sharding.tree_shardings({"w": jnp.zeros((6,))}, mesh, [(".*", ("data",))])
  assert odd["w"].spec == P(None)


def test_axis_name_spec_shards_the_largest_divisible_dimension():
  mesh = sharding.make_mesh({"data": 2, "fsdp": 4, "model": 1})
  tree = {"conv": jnp.zeros((3, 3, 16, 32)), "odd": jnp.zeros((6, 10)), "tie": jnp.zeros((8, 8)),
          "bias": jnp.zeros((5,)), "scalar": jnp.zeros(())}
  specs = jax.tree.map(lambda s: s.spec, sharding.tree_shardings(tree, mesh, [(".*", "fsdp")]))
  assert specs == {"conv": P(None, None, None, "fsdp"), "odd": P(), "tie": P(None, "fsdp"),
                   "bias": P(), "scalar": P()}
  assert sharding.batch_shards(mesh) == 8
  assert sharding.batch_sharding(mesh).spec == P(("data", "fsdp"))
  assert sharding.batch_shards(sharding.make_mesh({"data": 4, "model": 2})) == 4


def test_path_name_joins_keys():
  tree = {"a": [{"b": 1}]}
  paths = [sharding.path_name(p) for p, _ in jax.tree_util.tree_leaves_with_path(tree)]
  assert paths == ["a/0/b"]


def test_global_batch_splits_rows_over_data_axis():
  mesh = sharding.make_mesh({"data": 4, "model": 2})
  batch = {"x": np.arange(16, dtype=np.float32).reshape(8, 2)}
  out = sharding.global_batch(batch, mesh)
  assert out["x"].shape == (8, 2)
  shard_rows = sorted(tuple(np.asarray(s.data)[:, 0]) for s in out["x"].addressable_shards)
  assert shard_rows[0] == (0.0, 2.0) and len(shard_rows) == 8  # 4 row blocks x 2 replicas.
  np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])


def test_leading_ellipsis_aligns_a_spec_with_the_trailing_dimensions():
  mesh = sharding.make_mesh({"data": 4, "model": 2})
  tree = {"dense": jnp.zeros((16, 10)), "conv": jnp.zeros((3, 3, 8, 6)), "bias": jnp.zeros((6,))}
  for ellipsis in (..., "..."):  # Python's, and as JSON / command lines write it.
    specs = jax.tree.map(lambda s: s.spec, sharding.tree_shardings(
        tree, mesh, [(".*", (ellipsis, "model"))]))
    assert specs == {"dense": P(None, "model"), "conv": P(None, None, None, "model"),
                     "bias": P("model")}
  with pytest.raises(sharding.ConfigError, match=r"Partition rule \('\.\*', \(Ellipsis, 'data', "
                                                 r"'model'\)\) names 2 dimensions but bias has "
                                                 r"shape \(6,\)\.$"):
    sharding.tree_shardings(tree, mesh, [(".*", (..., "data", "model"))])


def test_ellipsis_only_leads_a_spec():
  from vision_jax import config as config_lib
  config = config_lib.base_config()
  config.total_steps = 1
  config.partition_rules = ((".*", ("model", ...)),)
  with pytest.raises(config_lib.ConfigError, match=r"'\.\.\.' may only be the first entry"):
    config_lib.validate(config)
  config.partition_rules = ((".*", (..., "model")),)
  config_lib.validate(config)
