"""The trainer end to end, in process: determinism, sharding, NaN guard,
eval mode, the digits demo (restores: test_restore.py; init_from: test_init_from.py)."""
import pathlib

import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from vision_jax import checkpoint, config as config_lib, metrics, sharding, train
from tiny_config import tiny_config

ROOT = pathlib.Path(__file__).parent.parent


def saved_state(workdir, step=None):
  """The train state saved at `step` (default: newest) as numpy arrays."""
  directory = pathlib.Path(workdir) / checkpoint.CHECKPOINT_DIR
  steps = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
  return checkpoint.read_state(directory / str(step or steps[-1]))


def assert_trees_equal(a, b, atol=0.0):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    if atol:
      np.testing.assert_allclose(x, y, atol=atol, rtol=0)
    else:
      np.testing.assert_array_equal(x, y)


def test_same_seed_gives_bit_identical_params_and_loss_falls(tmp_path):
  first = train.run(tiny_config(), str(tmp_path / "a"))
  second = train.run(tiny_config(), str(tmp_path / "b"))
  assert_trees_equal(saved_state(tmp_path / "a")["params"], saved_state(tmp_path / "b")["params"])
  assert first["train/loss"] == second["train/loss"]
  rows = [r for r in metrics.read_metrics(tmp_path / "a") if "train/loss" in r]
  assert [r["step"] for r in rows] == [5, 10, 15, 20]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"] - 0.05
  other = train.run(tiny_config(seed=1), str(tmp_path / "c"))
  assert other["train/loss"] != first["train/loss"]


def live_specs(state, suffix: str) -> dict[str, P]:
  """PartitionSpec of every live leaf of `state` whose path ends with `suffix`."""
  return {sharding.path_name(p): leaf.sharding.spec
          for p, leaf in jax.tree_util.tree_leaves_with_path(state)
          if sharding.path_name(p).endswith(suffix)}


def test_one_device_and_4x2_mesh_agree(tmp_path):
  rules = ((r".*head/kernel", (None, "model")), (r".*/kernel", (..., "model")), (".*", ()))
  single = tiny_config(**{"mesh.data": 1, "mesh.model": 1})
  sharded = tiny_config(**{"mesh.data": 4, "mesh.model": 2, "partition_rules": rules})
  s = train.setup(sharded)
  state = train.init_state(s)
  s.close()
  # Parameters and their SGD momentum alike, on the live arrays.
  head = live_specs(state, "head/kernel")
  conv = live_specs(state, "stage1_block1/conv1/kernel")
  assert len(head) == len(conv) == 2  # params/... and opt_state/.../trace/...
  assert set(head.values()) == {P(None, "model")}
  assert set(conv.values()) == {P(None, None, None, "model")}
  assert set(live_specs(state, "head/bias").values()) == {P()}
  train.run(single, str(tmp_path / "one"))
  train.run(sharded, str(tmp_path / "mesh"))
  one, mesh = saved_state(tmp_path / "one"), saved_state(tmp_path / "mesh")
  # Sums split over 8 shards round in another order, and training amplifies it: measured
  # max parameter difference 0 after 1 step, 3e-8 after 5, 4.6e-5 after 20 (this CPU);
  # a wrong sharding differs by ~1e-2.
  assert_trees_equal(one["params"], mesh["params"], atol=1e-4)
  assert_trees_equal(one["model_state"], mesh["model_state"], atol=1e-4)
  assert not np.allclose(one["params"]["head"]["kernel"],
                         saved_state(tmp_path / "one", step=10)["params"]["head"]["kernel"])


def _pvt_digits(**overrides):
  """A small PVT classifier on the digits, upsampled to 32x32, trained with Adam."""
  c = tiny_config(**overrides)
  c.model = ml_collections.ConfigDict({
      "name": "pvt_tiny", "num_classes": 10, "embed_dims": (16, 32, 32, 64),
      "num_heads": (1, 1, 2, 2), "mlp_ratios": (2, 2, 2, 2), "depths": (1, 1, 1, 1),
      "drop_path_rate": 0.0, "pretrain_size": 32})
  c.data.pp_train = "decode|resize(32)|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"
  c.data.pp_eval = c.data.pp_train
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  return c


@pytest.mark.parametrize("example", ["fsdp", "tensor_parallel"])
def test_readme_sharding_examples_shard_pvt_as_they_claim(example):
  """The README's two partition-rule examples, on PVT with Adam: the live train
  state after init and after a jitted step."""
  if example == "fsdp":
    config = _pvt_digits(**{"mesh.data": 2, "mesh.fsdp": -1, "partition_rules": ((".*", "fsdp"),)})
  else:
    config = _pvt_digits(**{"mesh.data": -1, "mesh.model": 2, "partition_rules": (
        (r".*/kernel", (..., "model")), (".*", ()))})
  s = train.setup(config)
  try:
    state = train.init_state(s)
    batch = sharding.global_batch(next(iter(s.train_data)), s.mesh)
  finally:
    s.close()
  stepped, _ = train.compile_train_step(s)(jax.tree.map(lambda x: x.copy(), state), batch)
  for live in (state, stepped):
    fc1 = live_specs(live, "block1_0/mlp/fc1/kernel")  # [16, 32]
    proj = live_specs(live, "patch_embed1/proj/kernel")  # [4, 4, 1, 16]
    pos = live_specs(live, "pos_embed1")  # [1, 64, 16]
    assert len(fc1) == len(proj) == len(pos) == 3  # The parameter, Adam's mu and nu.
    kernels = {k: v for k, v in live_specs(live, "kernel").items()}
    if example == "fsdp":
      assert dict(s.mesh.shape) == {"data": 2, "fsdp": 4, "model": 1}
      assert set(fc1.values()) == {P(None, "fsdp")}
      assert set(proj.values()) == {P(None, None, None, "fsdp")}
      assert set(pos.values()) == {P(None, "fsdp", None)}
      assert set(live_specs(live, "block1_0/norm1/scale").values()) == {P("fsdp")}
    else:
      assert dict(s.mesh.shape) == {"data": 4, "fsdp": 1, "model": 2}
      assert set(fc1.values()) == {P(None, "model")}
      assert set(proj.values()) == {P(None, None, None, "model")}
      assert set(pos.values()) == {P()}
      # Every kernel, 2-D Dense and 4-D conv alike, has its last dimension over `model`.
      assert len(kernels) > 30 and all(spec[-1] == "model" and all(a is None for a in spec[:-1])
                                       for spec in kernels.values()), kernels
      assert set(live_specs(live, "bias").values()) == {P()}


def test_a_spec_longer_than_a_leaf_is_a_config_error():
  rules = ((r".*/kernel", (None, None, None, "model")), (".*", ()))
  with pytest.raises(config_lib.ConfigError, match=r"names 4 dimensions but .*head/kernel has "
                                                   r"shape \(16, 10\); to shard its last "
                                                   r"dimensions write \(\.\.\., None, 'model'\)"):
    train.setup(tiny_config(**{"mesh.data": 4, "mesh.model": 2, "partition_rules": rules}))


def test_fsdp_mesh_shards_params_and_moments_and_agrees_with_one_device(tmp_path):
  single = tiny_config(**{"mesh.data": 1, "mesh.model": 1})
  fsdp = tiny_config(**{"mesh.data": 2, "mesh.fsdp": 4, "partition_rules": ((".*", "fsdp"),)})
  s = train.setup(fsdp)
  assert dict(s.mesh.shape) == {"data": 2, "fsdp": 4, "model": 1}
  head = s.state_shardings["params"]["head"]["kernel"]  # [16, 10]: 4 divides only 16.
  assert head.spec == P("fsdp", None)
  momentum = [sh for path, sh in jax.tree_util.tree_leaves_with_path(s.state_shardings["opt_state"])
              if sharding.path_name(path).endswith("head/kernel")]
  assert momentum and all(sh.spec == P("fsdp", None) for sh in momentum)
  assert s.state_shardings["step"].spec == P()
  s.train_data.close()
  train.run(single, str(tmp_path / "one"))
  train.run(fsdp, str(tmp_path / "fsdp"))
  one, sharded = saved_state(tmp_path / "one"), saved_state(tmp_path / "fsdp")
  assert_trees_equal(one["params"], sharded["params"], atol=1e-5)
  assert_trees_equal(one["opt_state"], sharded["opt_state"], atol=1e-5)


def test_nan_loss_stops_with_step_named_and_saves_nothing_bad(tmp_path):
  config = tiny_config(**{"optimizer.learning_rate": 1e30, "schedule.warmup_steps": 0,
                          "checkpoint_every_steps": 1, "log_every_steps": 1})
  with pytest.raises(metrics.NonFiniteLossError, match=r"Loss is nan at step (\d+); stopping"):
    train.run(config, str(tmp_path))
  directory = tmp_path / checkpoint.CHECKPOINT_DIR
  for step in sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()):
    params = saved_state(tmp_path, step)["params"]
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(params)), step


def test_eval_mode_reproduces_final_eval(tmp_path):
  trained = train.run(tiny_config(), str(tmp_path))
  evaluated = train.run(tiny_config(), str(tmp_path), mode="eval")
  assert evaluated["step"] == 20
  for key in ("eval/top1_accuracy", "eval/top5_accuracy"):
    assert evaluated[key] == trained[key]
  assert 0.0 < trained["eval/top1_accuracy"] <= 1.0


def test_read_state_restores_without_orbax_item_metadata_warning(tmp_path, caplog):
  train.run(tiny_config(total_steps=5, checkpoint_every_steps=5), str(tmp_path))
  caplog.clear()
  with caplog.at_level("WARNING"):
    state = saved_state(tmp_path)
  assert int(state["step"]) == 5
  assert not [r for r in caplog.records if "Metadata file does not exist" in r.getMessage()]


def test_malformed_records_are_skipped_and_counted_in_training(tmp_path, monkeypatch):
  from test_pipeline import ListSource
  from vision_jax.data import sources
  monkeypatch.setattr(sources, "open_source", lambda *a, **k: ListSource(40, bad={5, 17}))
  result = train.run(tiny_config(), str(tmp_path))
  rows = [r for r in metrics.read_metrics(tmp_path) if "data/skipped" in r]
  # 20 steps x 32 examples = 16 passes over 40 records, 2 of them corrupt each time.
  assert sum(r["data/skipped"] for r in rows) == 32
  assert result["eval/skipped_examples"] == 2
  assert np.isfinite(result["train/loss"])


def test_config_resume_continues_another_run_exactly(tmp_path):
  train.run(tiny_config(), str(tmp_path / "a"))
  step10 = str(tmp_path / "a" / checkpoint.CHECKPOINT_DIR / "10")
  result = train.run(tiny_config(resume=step10), str(tmp_path / "b"))
  assert result["step"] == 20
  assert [r["step"] for r in metrics.read_metrics(tmp_path / "b") if "train/loss" in r] == [15, 20]
  assert_trees_equal(saved_state(tmp_path / "a"), saved_state(tmp_path / "b"))


def test_bfloat16_compute_dtype_reaches_the_model():
  import jax.numpy as jnp
  assert train.build_model(tiny_config(compute_dtype="bfloat16")).dtype == jnp.bfloat16
  assert train.build_model(tiny_config()).dtype == jnp.float32


def test_family_default_rules_apply_when_the_config_leaves_partition_rules_alone():
  """PVT's own Megatron-style rules (models/backbones/pvt.py), also inside a
  RetinaNet, on a model axis of 2; no compute."""
  from vision_jax.models import features, retinanet  # pylint: disable=import-outside-toplevel
  s = train.setup(_pvt_digits(**{"mesh.data": -1, "mesh.model": 2}))
  s.close()
  specs = {sharding.path_name(p): x.spec
           for p, x in jax.tree_util.tree_leaves_with_path(s.state_shardings)}
  assert specs["params/block1_0/attn/kv/kernel"] == P(None, "model")
  assert specs["params/block1_0/attn/proj/kernel"] == P("model", None)
  assert specs["params/block2_0/mlp/fc2/kernel"] == P("model", None)
  assert specs["opt_state/1/0/mu/block1_0/mlp/fc1/bias"] == P("model")  # Adam's moments too.
  assert specs["params/block1_0/norm1/scale"] == specs["params/head/kernel"] == P()
  assert features.partition_rules(retinanet.RetinaNet(backbone="pvt_small")) == \
      features.partition_rules(s.model)
  assert features.partition_rules(retinanet.RetinaNet(backbone="resnet50")) == (
      (r".*/kernel", (..., "model")),)
  custom = train.setup(_pvt_digits(**{"mesh.data": -1, "mesh.model": 2,
                                      "partition_rules": ((".*", ()),) * 2}))
  custom.close()
  assert {x.spec for x in jax.tree.leaves(custom.state_shardings)} == {P()}
