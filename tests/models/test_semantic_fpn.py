"""Semantic FPN on PVT: the official ADE20K models' exact parameter counts,
the head's stages per level, the declared pyramid, and the output stride."""
import jax
import jax.numpy as jnp
import pytest

from vision_jax.models import semantic_fpn

TINY = {"embed_dims": (8, 16, 24, 32), "num_heads": (1, 1, 1, 1), "depths": (1, 1, 1, 1),
        "mlp_ratios": (2, 2, 2, 2)}


def _count(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def _variables(model, hw=(512, 512)):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, *hw, 3))))


@pytest.mark.parametrize("backbone, expected", [
    ("pvt_tiny", 16_981_398), ("pvt_small", 28_237_974), ("pvt_medium", 47_960_214),
    ("pvt_large", 65_121_430)])
def test_parameter_counts_equal_the_official_ade20k_models(backbone, expected):
  params = _variables(semantic_fpn.SemanticFPN(backbone=backbone, num_classes=150))["params"]
  assert _count(params) == expected
  assert _count(params["fpn"]) == 2_623_488 and _count(params["head"]) == 1_643_158


def test_head_has_log2_stride_stages_and_predicts_at_stride_4():
  model = semantic_fpn.SemanticFPN(backbone="pvt_tiny", backbone_args=TINY, num_classes=7,
                                   fpn_features=16, head_channels=8)
  variables = _variables(model, (96, 64))
  convs = sorted(k for k in variables["params"]["head"] if "conv" in k)
  assert convs == ["scale0_conv0", "scale1_conv0", "scale2_conv0", "scale2_conv1",
                   "scale3_conv0", "scale3_conv1", "scale3_conv2"]
  assert [l.stride for l in model.feature_levels().values()] == [4, 8, 16, 32]
  out = jax.eval_shape(lambda v: model.apply(v, jnp.zeros((2, 96, 64, 3)))[0], variables)
  assert out["logits"].shape == (2, 24, 16, 7)


def test_a_backbone_without_the_strides_is_named_before_compute():
  model = semantic_fpn.SemanticFPN(backbone="pvt_tiny", in_strides=(2, 4, 8, 16))
  with pytest.raises(ValueError, match=r"needs feature strides \(2, 4, 8, 16\)"):
    model.feature_levels()
