"""Sparse training through the trainer: a GMP run on the digits reaches its
target within a stated margin of dense; masks shard like their parameters;
per-layer FLOPs counted as the papers count them."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from vision_jax import metrics, train
from vision_jax.sparsity import accounting
from test_train import live_specs
from tiny_config import SPARSE, tiny_config

# Adam, width 16, 100 steps: dense reaches ~0.96 on the 359 test digits.
SHORT = {"optimizer.name": "adam", "optimizer.learning_rate": 0.01, "optimizer.weight_decay": 0.0,
         "schedule.name": "cosine", "model.width": 16, "total_steps": 100,
         "log_every_steps": 10, "checkpoint_every_steps": 100}
GMP_80 = {"name": "sparsity", "method": "gmp", "density": 0.2, "exclude": "(stem_conv|head)/kernel",
          "begin_steps": 10, "end_steps": 50, "frequency_steps": 10}
MARGIN = 0.07  # Measured: 0.964 dense, 0.919 at 80% sparsity.


def test_gmp_on_digits_reaches_80_percent_sparsity_within_margin_of_dense(tmp_path):
  dense = train.run(tiny_config(**SHORT), str(tmp_path / "dense"))
  sparse = train.run(tiny_config(**SHORT, **{"optimizer.transforms": (GMP_80,)}),
                     str(tmp_path / "gmp"))
  table = json.loads((tmp_path / "gmp" / "sparsity.json").read_text())  # The final masks.
  masked = [r for r in table if r["layer"] not in ("total", "stem_conv/kernel", "head/kernel")]
  assert len(masked) == 5
  kept = sum(round(r["params"] * 0.2) for r in masked)  # Per layer: round(n_l (1 - s)).
  assert [r["nonzero"] for r in masked] == [round(r["params"] * 0.2) for r in masked]
  assert table[-1]["nonzero"] == table[-1]["params"] - sum(r["params"] for r in masked) + kept
  assert table[-1]["sparse_flops"] < table[-1]["flops"]
  target = 1 - kept / sum(r["params"] for r in masked)
  assert sparse["train/sparsity/measured"] == sparse["train/sparsity/masks"] == pytest.approx(
      target, abs=1e-7)
  assert dense["eval/top1_accuracy"] >= 0.9
  assert sparse["eval/top1_accuracy"] >= dense["eval/top1_accuracy"] - MARGIN
  rows = {r["step"]: r["train/sparsity/masks"] for r in metrics.read_metrics(tmp_path / "gmp")
          if "train/sparsity/masks" in r}
  assert rows[10] == pytest.approx(0.0, abs=1e-6)  # Step 10 prunes to s_i = 0.
  assert 0.0 < rows[20] < rows[30] < rows[40] < rows[50] == pytest.approx(target, abs=1e-7)
  s = train.setup(tiny_config(**SHORT))
  s.close()
  assert table[-1]["params"] == sum(x.size for x in jax.tree.leaves(
      jax.eval_shape(s.init_fn)["params"]))


def test_masks_shard_like_their_params_on_the_8_device_mesh():
  rules = ((r".*head/kernel", (None, "model")), (r".*/kernel", (..., "model")), (".*", ()))
  s = train.setup(tiny_config(**{"mesh.data": 4, "mesh.model": 2, "partition_rules": rules,
                                 "optimizer.transforms": (SPARSE,)}))
  state = train.init_state(s)
  s.close()
  params = live_specs(state["params"], "kernel")
  masks = {k[len("opt_state/masks/"):]: v for k, v in live_specs(state, "kernel").items()
           if k.startswith("opt_state/masks/")}
  assert set(masks) == set(params) - {"stem_conv/kernel", "head/kernel"}
  assert masks == {k: params[k] for k in masks}
  assert any(spec != jax.sharding.PartitionSpec() for spec in masks.values())


class _Net(nn.Module):
  @nn.compact
  def __call__(self, x, train=False):
    x = nn.Conv(8, (3, 3), strides=2, name="conv")(x)  # 10x12 -> 5x6.
    x = nn.Conv(8, (3, 3), feature_group_count=4, name="grouped")(x)
    return nn.Dense(3, name="fc")(x.reshape(x.shape[0], -1))


def test_flops_are_output_positions_times_kernel_size():
  inputs = (jax.ShapeDtypeStruct((10, 12, 2), jnp.float32),)
  variables = jax.eval_shape(lambda: _Net().init(jax.random.PRNGKey(0),
                                                 jnp.zeros((1, 10, 12, 2))))
  flops = accounting.dense_flops(_Net(), variables, inputs)
  assert flops == {"conv/kernel": 5 * 6 * 3 * 3 * 2 * 8, "grouped/kernel": 5 * 6 * 3 * 3 * 2 * 8,
                   "fc/kernel": 240 * 3}
  rows = accounting.layer_table(variables["params"], {"conv/kernel": 0.25}, flops)
  conv, total = rows[0], rows[-1]
  assert (conv["layer"], conv["nonzero"], conv["sparse_flops"]) == ("conv/kernel", 36, 1080)
  assert total["params"] == 144 + 8 + 144 + 8 + 720 + 3
  assert total["nonzero"] == total["params"] - 108
  assert (total["flops"], total["sparse_flops"]) == (9360, 9360 - 3240)


def test_every_sparsity_config_validates_and_bad_arguments_are_named():
  import pathlib
  from vision_jax import config as config_lib
  from vision_jax.errors import ConfigError
  root = pathlib.Path(__file__).parent.parent.parent / "configs" / "sparsity"
  digits = config_lib.load(f"{root / 'digits.py'}").get("optimizer")
  assert digits.transforms == ()  # method=dense
  for method in ("uniform", "erk", "er", "gmp", "rigl", "set", "granet", "imp", "imp_ap",
                 "gmp_ap", "sift_wide", "sift_parallel", "sift_factorized", "sift_doped"):
    c = config_lib.load(f"{root / 'digits.py'}:method={method},density=0.25")
    config_lib.validate(c)
    assert c.optimizer.transforms[0]["name"] == "sparsity"
  for method in ("dense", "static", "gmp", "rigl", "set", "granet"):
    config_lib.validate(config_lib.load(f"{root / 'cifar.py'}:method={method},dataset=cifar100"))
  with pytest.raises(ConfigError, match="method='lottery'"):
    config_lib.load(f"{root / 'digits.py'}:method=lottery")
