"""The trainer end to end, in process: determinism, sharding, NaN guard,
checkpoint fallback, partial init, eval mode, the digits demo."""
import pathlib

import jax
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


def test_one_device_and_4x2_mesh_agree(tmp_path):
  rules = ((r".*/kernel", (None, None, None, "model")), (r".*head/kernel", (None, "model")),
           (".*", ()))
  single = tiny_config(**{"mesh.data": 1, "mesh.model": 1})
  sharded = tiny_config(**{"mesh.data": 4, "mesh.model": 2, "partition_rules": rules})
  train.run(single, str(tmp_path / "one"))
  train.run(sharded, str(tmp_path / "mesh"))
  one, mesh = saved_state(tmp_path / "one"), saved_state(tmp_path / "mesh")
  assert_trees_equal(one["params"], mesh["params"], atol=1e-5)
  assert_trees_equal(one["model_state"], mesh["model_state"], atol=1e-5)
  assert not np.allclose(one["params"]["head"]["kernel"],
                         saved_state(tmp_path / "one", step=10)["params"]["head"]["kernel"])


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


def test_corrupt_newest_checkpoint_falls_back(tmp_path, caplog):
  train.run(tiny_config(), str(tmp_path))
  newest = tmp_path / checkpoint.CHECKPOINT_DIR / "20" / "state"
  for path in newest.rglob("*"):
    if path.is_file():
      path.write_bytes(b"garbage")
  result = train.run(tiny_config(total_steps=25), str(tmp_path))
  assert "Checkpoint at step 20" in caplog.text and "falling back" in caplog.text
  assert [p.name.split("-")[0] for p in (tmp_path / checkpoint.CORRUPT_DIR).iterdir()] == ["20"]
  assert result["step"] == 25
  rows = [r["step"] for r in metrics.read_metrics(tmp_path) if "train/loss" in r]
  assert rows[-3:] == [15, 20, 25]  # Steps 11-20 were trained again from step 10.


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


def test_init_from_loads_matching_subtree_and_reports_the_rest(tmp_path):
  train.run(tiny_config(), str(tmp_path / "src"))
  config = tiny_config(**{"model.num_classes": 5})
  s = train.setup(config)
  state = jax.jit(s.init_fn, out_shardings=s.state_shardings)()
  src = str(tmp_path / "src" / checkpoint.CHECKPOINT_DIR / "20")
  new_state, report = checkpoint.load_partial(src, "params", None, state)
  saved = saved_state(tmp_path / "src")["params"]
  np.testing.assert_array_equal(new_state["params"]["stem_conv"]["kernel"],
                                saved["stem_conv"]["kernel"])
  assert report["mismatched"] == ["params/head/bias: (10,) vs (5,)",
                                  "params/head/kernel: (16, 10) vs (16, 5)"]
  assert report["missing"] == [] and report["unused"] == []
  assert len(report["loaded"]) == len(jax.tree.leaves(state["params"])) - 2
  with pytest.raises(KeyError, match="No subtree 'params/backbone'"):
    checkpoint.load_partial(src, "params/backbone", None, state)


def _digits_config(arg):
  return config_lib.load(f"{ROOT / 'configs' / 'resnet_digits.py'}:{arg or ''}")


@pytest.mark.slow
def test_digits_demo_reaches_95_percent(tmp_path):
  result = train.run(_digits_config(""), str(tmp_path))
  assert result["eval/top1_accuracy"] >= 0.95, result


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
