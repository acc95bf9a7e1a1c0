"""config.init_from: strict loading of reference weights and checkpoints into a
part of the model, and the report of what was left at initialisation."""
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # Reference implementations: installed by the `test` extra.
import transformers
from safetensors.torch import save_file

from vision_jax import checkpoint, init_from, train
from vision_jax.models.backbones import pvt_weights
from vision_jax.config import ConfigError
from vision_jax.models import retinanet
from test_train import saved_state
from tiny_config import tiny_config

HEAD = ["cls_token", "head/bias", "head/kernel", "norm/bias", "norm/scale"]


def _hf_pvt(path, depths):
  torch.manual_seed(0)
  hf = transformers.PvtForImageClassification(transformers.PvtConfig(num_labels=10, depths=depths))
  save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
  return str(path)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
  root = tmp_path_factory.mktemp("weights")
  return {"tiny": _hf_pvt(root / "pvt_tiny.safetensors", [2, 2, 2, 2]),
          "small": _hf_pvt(root / "pvt_small.safetensors", [3, 4, 6, 3])}


DETECTOR = retinanet.RetinaNet(backbone="pvt_tiny", num_classes=3)


@pytest.fixture(scope="module")
def detector_state():
  model = DETECTOR
  init = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]
  return {"params": init, "step": jnp.zeros((), jnp.int32)}


def test_pvt_weights_fill_the_backbone_and_only_the_classifier_head_is_dropped(weights,
                                                                                detector_state):
  init = detector_state["params"]
  new, report = init_from.load_partial(weights["tiny"], "params", "params/backbone",
                                       detector_state, model=DETECTOR)
  converted = pvt_weights.load_pretrained(weights["tiny"])["params"]
  np.testing.assert_array_equal(new["params"]["backbone"]["block2_1"]["attn"]["kv"]["kernel"],
                                converted["block2_1"]["attn"]["kv"]["kernel"])
  np.testing.assert_array_equal(new["params"]["backbone"]["pos_embed4"], converted["pos_embed4"])
  assert len(report["loaded"]) == len(jax.tree.leaves(init["backbone"]))
  assert report["missing"] == report["mismatched"] == report["unused"] == []
  assert report["dropped"] == HEAD
  assert {p.split("/")[1] for p in report["untouched"]} == {"fpn", "head"}
  assert len(report["untouched"]) == len(jax.tree.leaves(init["fpn"])) + len(
      jax.tree.leaves(init["head"]))
  np.testing.assert_array_equal(new["params"]["head"]["cls_out"]["kernel"],
                                init["head"]["cls_out"]["kernel"])


def test_weights_of_another_size_fail_unless_not_strict(weights, detector_state):
  # PVT-Small has every block of PVT-Tiny (same widths) and 8 more: they would be unused.
  with pytest.raises(ConfigError, match=r"does not fit the model: \d+ unused: block1_2/attn/kv/"
                                        r"bias.*pvt_small.pth for variant=small.*strict=False"):
    init_from.load_partial(weights["small"], "params", "params/backbone", detector_state,
                           model=DETECTOR)
  new, report = init_from.load_partial(weights["small"], "params", "params/backbone",
                                       detector_state, strict=False, model=DETECTOR)
  assert len(report["loaded"]) == len(jax.tree.leaves(detector_state["params"]["backbone"]))
  extra = {"block1_2", "block2_2", "block2_3", "block3_2", "block3_3", "block3_4", "block3_5",
           "block4_2"}
  assert {k.split("/")[0] for k in report["unused"]} == extra
  assert report["dropped"] == HEAD
  small = pvt_weights.load_pretrained(weights["small"])["params"]
  np.testing.assert_array_equal(new["params"]["backbone"]["block3_1"]["mlp"]["fc1"]["kernel"],
                                small["block3_1"]["mlp"]["fc1"]["kernel"])
  # Missing leaves: PVT-Tiny weights into a PVT-Small backbone.
  model = retinanet.RetinaNet(backbone="pvt_small", num_classes=3)
  state = {"params": jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                                       jnp.zeros((1, 64, 64, 3)))["params"])}
  with pytest.raises(ConfigError, match=r"\d+ missing: params/backbone/block1_2/"):
    init_from.load_partial(weights["tiny"], "params", "params/backbone", state, model=model)


def test_trainer_init_from_is_strict_and_logs_a_lenient_load(tmp_path, caplog):
  pp = "decode|normalize(0.5, 0.5)|onehot(12)|keep('image', 'labels')"
  train.run(tiny_config(**{"model.num_classes": 12, "data.pp_train": pp, "data.pp_eval": pp}),
            str(tmp_path / "src"))
  src = str(tmp_path / "src" / checkpoint.CHECKPOINT_DIR / "20")
  other = tiny_config(**{"init_from.path": src, "total_steps": 1, "checkpoint_every_steps": 1})
  with pytest.raises(ConfigError, match=r"2 mismatched: params/head/bias: \(12,\) vs \(10,\), "
                                        r"params/head/kernel: \(16, 12\) vs \(16, 10\)"):
    train.run(other, str(tmp_path / "strict"))
  assert not (tmp_path / "strict" / checkpoint.CHECKPOINT_DIR).exists() or not list(
      (tmp_path / "strict" / checkpoint.CHECKPOINT_DIR).iterdir())
  other.init_from.strict = False
  with caplog.at_level(logging.INFO):
    train.run(other, str(tmp_path / "lenient"))
  line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("init_from"))
  params = len(jax.tree.leaves(saved_state(tmp_path / "src")["params"]))
  assert f"(not strict): loaded {params - 2}, mismatched 2 [params/head/bias" in line
  with pytest.raises(KeyError, match="No subtree 'params/backbone'"):
    init_from.load_partial(src, "params/backbone", None, {"params": {}})


def test_a_torchvision_resnet_fills_a_retinanet_backbone_with_its_batchnorm_statistics(tmp_path):
  """The weights file is converted by the family of the part at the target
  (ResNet's for params/backbone), BatchNorm statistics go to model_state."""
  import torchvision  # pylint: disable=import-outside-toplevel
  torch.manual_seed(0)
  reference = torchvision.models.resnet18()
  with torch.no_grad():
    for m in reference.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.normal_()
  path = tmp_path / "resnet18.pth"
  torch.save(reference.state_dict(), path)
  model = retinanet.RetinaNet(backbone="resnet18", num_classes=3, fpn_features=16,
                              head_features=16, head_convs=1)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  state = {"params": variables["params"], "model_state": {"batch_stats": variables["batch_stats"]}}
  new, report = init_from.load_partial(str(path), "params", "params/backbone", state, model=model)
  stats = new["model_state"]["batch_stats"]["backbone"]
  np.testing.assert_array_equal(stats["stage3_block2"]["bn1"]["mean"],
                                reference.layer3[1].bn1.running_mean.numpy())
  np.testing.assert_array_equal(new["params"]["backbone"]["stem_conv"]["kernel"],
                                reference.conv1.weight.detach().numpy().transpose(2, 3, 1, 0))
  leaves = len(jax.tree.leaves(variables["params"]["backbone"])) + len(
      jax.tree.leaves(variables["batch_stats"]["backbone"]))
  assert len(report["loaded"]) == leaves
  assert report["dropped"] == ["head/bias", "head/kernel"]
  assert report["missing"] == report["unused"] == []
  with pytest.raises(ValueError, match="needs the model it is for"):
    init_from.load_partial(str(path), "params", "params/backbone", state)
