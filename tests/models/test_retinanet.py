"""RetinaNet on any backbone: exact parameter counts (PVT and the ResNet-50
baseline), the declared pyramid against the real one, the FPN and the head prior."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import config as config_lib
from vision_jax.models import features, retinanet
from vision_jax.models.backbones import resnet
from vision_jax.models.necks import fpn
from vision_jax.optim import builder
from test_detection import TINY_BACKBONE, _count, _params

@pytest.mark.parametrize("backbone, expected", [
    ("pvt_tiny", 22_964_724), ("pvt_small", 34_221_300),
    ("pvt_medium", 53_943_540), ("pvt_large", 71_104_756)])
def test_retinanet_pvt_parameter_counts(backbone, expected):
  params = _params(retinanet.RetinaNet(backbone=backbone, num_classes=80))
  assert _count(params) == expected
  assert _count(params["fpn"]) == 3_786_752 and _count(params["head"]) == 6_463_220


def test_pyramid_levels_and_anchor_count_at_the_coco_canvas():
  model = retinanet.RetinaNet(backbone="pvt_tiny", backbone_args={"depths": (1, 1, 1, 1)})
  levels = []

  def forward():
    out, aux = model.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 800, 1344, 3)),
                                      train=False)[0]
    levels.append(aux["levels"])  # Static Python ints while tracing.
    return out

  out = jax.eval_shape(forward)
  assert levels[0] == ((100, 168), (50, 84), (25, 42), (13, 21), (7, 11))
  assert out["cls"].shape == (1, 201_600, 80) and out["reg"].shape == (1, 201_600, 4)


def test_upsample_nearest_matches_torch_interpolate():
  import torch  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(0).normal(size=(1, 5, 7, 3)).astype(np.float32)
  for size in [(10, 14), (9, 13), (11, 7)]:
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=size,
                                          mode="nearest").permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(np.asarray(fpn.upsample_nearest(jnp.asarray(x), size)), ref)


def test_head_starts_at_the_focal_prior():
  model = retinanet.RetinaNet(backbone="pvt_tiny", backbone_args=TINY_BACKBONE, num_classes=3,
                              fpn_features=16, head_features=16, head_convs=1)
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
  np.testing.assert_allclose(variables["params"]["head"]["cls_out"]["bias"],
                             -math.log(99.0), rtol=1e-6)  # -4.59512
  outputs, _ = model.apply(variables, jnp.ones((1, 64, 64, 3)))
  np.testing.assert_allclose(jnp.mean(jax.nn.sigmoid(outputs["cls"])), 0.01, atol=2e-3)
  assert abs(float(jnp.std(variables["params"]["head"]["cls_conv0"]["kernel"])) - 0.01) < 1e-3
  wider = retinanet.RetinaNet(backbone="pvt_tiny", backbone_args=TINY_BACKBONE, num_classes=3,
                              fpn_features=16, head_features=16, head_convs=1, head_init_std=0.04)
  kernel = wider.init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))["params"]["head"]["cls_conv0"]["kernel"]
  assert abs(float(jnp.std(kernel)) - 0.04) < 4e-3


def test_retinanet_r50_is_mmdet_retinanet_r50_fpn_1x():
  """37,968,692 parameters; 37,743,348 train with the stem and stage 1 frozen:
  the 37.7M of the PVT paper's Table 3 (mmcv counts trainable parameters)."""
  model = retinanet.RetinaNet(backbone="resnet50", backbone_args={"norm_eval": True},
                              num_classes=80)
  params = _params(model, (64, 64))
  assert _count(params) == 37_968_692
  assert _count(params["backbone"]) == 25_557_032 - (2048 * 1000 + 1000)
  assert _count(params["fpn"]) == 7_997_440  # P6 from the 2048-channel C5.
  from configs.retinanet import coco  # pylint: disable=import-outside-toplevel
  labels = builder.group_labels(params, [coco.R50_FROZEN])
  frozen = sum(int(np.prod(x.shape)) for x, label in zip(jax.tree.leaves(params),
                                                          jax.tree.leaves(labels))
               if label == "group0")
  assert _count(params) - frozen == 37_743_348


@pytest.mark.parametrize("backbone, args, hw", [
    ("resnet50", {}, (96, 64)), ("resnet18d", {}, (64, 64)),
    ("pvt_tiny", TINY_BACKBONE, (64, 96))])
def test_declared_levels_are_the_real_outputs(backbone, args, hw):
  from vision_jax import models  # pylint: disable=import-outside-toplevel
  net = models.MODELS.get(backbone)(features_only=True, **args)
  declared = net.feature_levels()
  maps, _ = jax.eval_shape(lambda: net.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3)))[0])
  assert list(maps) == list(declared) == ["C2", "C3", "C4", "C5"]
  for name, level in declared.items():
    assert maps[name].shape == (1, hw[0] // level.stride, hw[1] // level.stride, level.channels)
  detector = retinanet.RetinaNet(backbone=backbone, backbone_args=args, num_classes=3,
                                 fpn_features=16, head_features=16, head_convs=1)
  pyramid = detector.feature_levels()
  assert {n: (l.stride, l.channels) for n, l in pyramid.items()} == {
      "P3": (8, 16), "P4": (16, 16), "P5": (32, 16), "P6": (64, 16), "P7": (128, 16)}
  _, aux = jax.eval_shape(lambda: detector.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3)))[0])
  assert [p.shape[1:] for p in aux["fpn"]] == [
      (-(-hw[0] // l.stride), -(-hw[1] // l.stride), l.channels) for l in pyramid.values()]


def test_a_backbone_without_the_fpn_strides_is_named_before_compute():
  detector = retinanet.RetinaNet(backbone="resnet18", backbone_args={"small_input": True})
  with pytest.raises(ValueError, match=r"FPN needs feature strides \(8, 16, 32\); the backbone "
                                       r"has C0 \(stride 1, 64 ch\), C1.*C3 \(stride 8, 512 ch\)"):
    detector.feature_levels()


def test_backbone_by_name_validated_against_its_constructor():
  with pytest.raises(config_lib.ConfigError,
                     match=r"'model.backbone_args.norm_evl'.*Did you mean 'norm_eval'"):
    config_lib.check_model("retinanet", {"backbone": "resnet50",
                                         "backbone_args": {"norm_evl": True}}, "model")
  with pytest.raises(config_lib.ConfigError, match=r"'model.backbone'.*Did you mean 'resnet50'"):
    config_lib.check_model("retinanet", {"backbone": "resnet05"}, "model")
  assert features.submodels(retinanet.RetinaNet) == ("backbone",)
  assert isinstance(features.resolve(retinanet.RetinaNet(backbone="resnet50"), "backbone"),
                    resnet.ResNet)
  assert features.resolve(retinanet.RetinaNet(), "backbone").features_only
  with pytest.raises(KeyError, match="RetinaNet has no part 'neck'"):
    features.resolve(retinanet.RetinaNet(), "neck")

