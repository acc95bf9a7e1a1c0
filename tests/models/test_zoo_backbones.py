"""Every hierarchical backbone of the zoo plugs into RetinaNet (by its declared
levels) and into the GCR head (by its pooled features), by name: the
declarations equal the real outputs (shapes only, nothing compiled)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import models
from vision_jax.models import gcr, retinanet

# (backbone, input (h, w)); Inception's VALID stem needs >= 75 px.
ZOO = [("inception_v4", (139, 171)), ("inception_resnet_v2", (139, 171)),
       ("vovnet39a", (64, 96)), ("vovnet57a", (96, 64)), ("ese_vovnet19b_dw", (64, 96)),
       ("ese_vovnet39b", (64, 64)), ("ese_vovnet57b", (96, 64)),
       ("emo2_1m", (64, 96)), ("emo2_2m", (96, 64)), ("emo2_5m", (64, 64))]
SAME_PADDED = {"vovnet", "emo"}  # Families whose level maps are exactly H/stride x W/stride.


def _shapes(module, hw):
  return jax.eval_shape(lambda: module.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3)))[0])


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("backbone, hw", ZOO)
def test_declared_levels_are_the_real_outputs_and_feed_retinanet(backbone, hw):
  net = models.MODELS.get(backbone)(features_only=True)
  declared = net.feature_levels()
  maps, _ = _shapes(net, hw)
  assert list(maps) == list(declared) and {"C3", "C4", "C5"} <= set(declared)
  exact = any(backbone.startswith(f) or f in backbone for f in SAME_PADDED)
  for name, level in declared.items():
    _, h, w, c = maps[name].shape
    assert c == level.channels, name
    if exact:
      assert (h, w) == (hw[0] // level.stride, hw[1] // level.stride), name
    else:  # VALID padding: each level is a stride-`stride` subsampling, a little smaller.
      assert 0 < h <= hw[0] // level.stride and 0 < w <= hw[1] // level.stride, name
  detector = retinanet.RetinaNet(backbone=backbone, num_classes=3, fpn_features=16,
                                 head_features=16, head_convs=1)
  pyramid = detector.feature_levels()
  assert {n: (l.stride, l.channels) for n, l in pyramid.items()} == {
      "P3": (8, 16), "P4": (16, 16), "P5": (32, 16), "P6": (64, 16), "P7": (128, 16)}
  outputs, aux = _shapes(detector, hw)
  sizes = [maps[n].shape[1:3] for n in ("C3", "C4", "C5")]
  for _ in range(2):  # P6 from C5 and P7 from P6: 3x3 stride-2 convs with padding 1.
    sizes.append(tuple(-(-s // 2) for s in sizes[-1]))
  assert [p.shape[1:] for p in aux["fpn"]] == [(*s, 16) for s in sizes]
  assert outputs["cls"].shape == (1, 9 * sum(h * w for h, w in sizes), 3)


@pytest.mark.parametrize("backbone, hw", ZOO[::3])
def test_gcr_head_on_the_pooled_features(backbone, hw):
  classes, k = 5, 4
  model = gcr.GrassmannClassifier(num_classes=classes, backbone=backbone, subspace_dim=k)
  (logits, _), variables = jax.eval_shape(lambda: model.init_with_output(
      jax.random.PRNGKey(0), jnp.zeros((2, *hw, 3))))
  features, _ = _shapes(models.MODELS.get(backbone)(num_classes=0), hw)
  assert logits.shape == (2, classes) and features.ndim == 2
  assert _count(variables["params"]["head"]) == classes * features.shape[1] * k


def test_every_zoo_detection_variant_validates_with_its_recipe():
  from configs.retinanet import coco  # pylint: disable=import-outside-toplevel
  from vision_jax import config as config_lib  # pylint: disable=import-outside-toplevel
  assert {b for b, _ in coco.ZOO.values()} == {name for name, _ in ZOO}
  for variant, (backbone, recipe) in coco.ZOO.items():
    c = config_lib.load(f"configs/retinanet/coco.py:variant={variant}")
    config_lib.validate(c)  # Names and backbone_args (norm_eval) checked against the model.
    assert (c.model.backbone, c.model.backbone_args["norm_eval"]) == (backbone, True)
    assert (c.optimizer.name, tuple(c.optimizer.groups)) == (recipe, ())
