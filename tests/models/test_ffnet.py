"""FFNet: exact parameter counts of the official code (reference/dense.md,
section 3), output strides, the declared levels against the real ones, the
pre-downsampling Gaussian against scipy and a direct computation, the
upsampling modes, and one forward pass in training mode."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.models import ffnet
from vision_jax.models.backbones import ffnet as ffnet_backbones
from vision_jax.models.heads import ffnet_head


def _count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _init_shapes(model, size=(64, 64)):
  """Variables and outputs as shapes: traced, nothing compiled."""
  x = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
  return jax.eval_shape(lambda x: model.init_with_output(jax.random.PRNGKey(0), x)[::-1], x)


@pytest.mark.parametrize("name, total, backbone, head", [
    ("ffnet18_dAAA", 15_181_267, 11_180_736, 4_000_531),
    ("ffnet18_dAAC", 13_403_347, 11_180_736, 2_222_611),
    ("ffnet34_AAA", 25_285_203, 21_284_672, 4_000_531),
    ("ffnet34_dAAA", 25_289_427, 21_288_896, 4_000_531),  # + the "_D" layer1 projection.
    ("ffnet34_ABB", 22_550_163, 21_284_672, 1_265_491),
    ("ffnet50_AAA", 28_553_043, 23_508_032, 5_045_011),
    ("ffnet101_AAA", 47_545_171, 42_500_160, 5_045_011),
    ("ffnet40S_BBB_mobile", 13_907_059, 12_698_912, 1_208_147),
    ("ffnet78S_BCC_mobile_pre_down", 26_828_435, 26_278_688, 549_747),
    ("ffnet86S_dBBB_mobile", 26_607_347, 25_399_200, 1_208_147),
    ("ffnet122NS_CCC_mobile", 32_165_683, 31_640_512, 525_171),
    ("ffnet122N_CBB", 51_393_555, None, None),
])
def test_parameter_counts(name, total, backbone, head):
  variables, _ = _init_shapes(getattr(ffnet, name)())
  params = variables["params"]
  assert _count(params) == total
  if backbone is not None:
    assert (_count(params["backbone"]), _count(params["head"])) == (backbone, head)


@pytest.mark.parametrize("name, stride, total", [
    ("ffnet18_dAAA", 8, 15_181_267), ("ffnet34_AAA", 4, 25_285_203),
    ("ffnet40S_BBB_mobile_pre_down", 8, 13_907_059)])  # pre_down adds no parameters.
def test_output_shapes_at_256x512(name, stride, total):
  model = ffnet.ffnet(name)
  variables, (outputs, aux) = _init_shapes(model, (256, 512))
  assert model.output_stride() == stride and _count(variables["params"]) == total
  assert outputs["logits"].shape == (1, 256 // stride, 512 // stride, 19)
  assert outputs["logits"].dtype == jnp.float32
  assert set(aux) >= {"up", "features"} | set(model.backbone_levels())
  assert "smoothing" not in str(jax.tree.structure(variables))  # The Gaussian is a constant.


def test_every_variant_is_constructible():
  assert len(VARIANT_NAMES) == len(set(ffnet.VARIANTS)) == 66
  assert set(ffnet.VARIANTS) == VARIANT_NAMES
  for name in ffnet.VARIANTS:
    model = getattr(ffnet, name)(num_classes=3)
    assert model == ffnet.ffnet(name, num_classes=3)
    levels = model.backbone_levels()
    strides = [level.stride for level in levels.values()]
    first = 8 if re.search(r"_d[ABC]{3}", name) else 4
    assert strides == [first, 2 * first, 4 * first, 8 * first], name
    assert model.output_stride() == first * (2 if name.endswith("_pre_down") else 1)
    assert model.mobile == ("_mobile" in name)


def test_names_that_are_not_ffnets_fail_clearly():
  with pytest.raises(KeyError, match="stem B"):
    ffnet.ffnet("ffnet40S_AAA")
  with pytest.raises(KeyError, match="no backbone"):
    ffnet.ffnet("ffnet19_AAA")
  with pytest.raises(KeyError, match="not an FFNet name"):
    ffnet.ffnet("ffnet18_dAAD")
  with pytest.raises(AttributeError):
    getattr(ffnet, "ffnet18_AAX")


@pytest.mark.parametrize("name, channels", [
    ("ffnet_resnet18", (64, 128, 256, 512)), ("ffnet_resnet50_D", (256, 512, 1024, 2048)),
    ("ffnet_resnet22S", (64, 128, 192, 320)), ("ffnet_resnet46N", (64, 96, 160, 320)),
    ("ffnet_resnet46NS", (64, 64, 128, 256))])
def test_declared_levels_match_the_maps(name, channels):
  model = ffnet_backbones.backbone(name)
  declared = model.feature_levels()
  (levels, _), _ = jax.eval_shape(
      lambda x: model.init_with_output(jax.random.PRNGKey(0), x),
      jax.ShapeDtypeStruct((1, 128, 128, 3), jnp.float32))
  assert list(levels) == list(declared)
  for key, level in declared.items():
    assert levels[key].shape == (1, 128 // level.stride, 128 // level.stride, level.channels)
  assert tuple(level.channels for level in declared.values()) == channels
  assert len(ffnet_backbones.BACKBONES) == 36 and name in ffnet_backbones.BACKBONES


def test_gaussian_kernel_is_scipys():
  from scipy import ndimage  # pylint: disable=import-outside-toplevel
  impulse = np.zeros((5, 5), np.float32)
  impulse[2, 2] = 1
  kernel = ffnet_head.gaussian_kernel(5, 0.7)
  np.testing.assert_allclose(kernel, ndimage.gaussian_filter(impulse, sigma=0.7), atol=1e-7)
  np.testing.assert_allclose(kernel.sum(), 1.0, rtol=1e-6)
  np.testing.assert_allclose(kernel, kernel.T)


def test_pre_down_matches_a_direct_computation():
  """Reflect-pad a row top and bottom (torch's "reflect" = numpy's), then the
  5x5 Gaussian at stride 2 without padding, per channel."""
  x = np.random.default_rng(0).normal(size=(1, 11, 14, 3)).astype(np.float32)
  padded = np.pad(x, ((0, 0), (1, 1), (0, 0), (0, 0)), mode="reflect")
  kernel = ffnet_head.gaussian_kernel()
  ref = np.zeros((1, 5, 5, 3), np.float32)
  for i in range(5):
    for j in range(5):
      ref[:, i, j] = np.einsum("bhwc,hw->bc", padded[:, 2 * i:2 * i + 5, 2 * j:2 * j + 5], kernel)
  out = np.asarray(ffnet_head.smooth_and_downsample(jnp.asarray(x)))
  np.testing.assert_allclose(out, ref, atol=1e-5)
  const = ffnet_head.smooth_and_downsample(jnp.full((1, 8, 8, 3), 2.0))
  np.testing.assert_allclose(np.asarray(const), 2.0, rtol=1e-6)


def test_upsampling_modes():
  """Bilinear with align_corners=True maps corners to corners, so a linear ramp
  comes out exactly at i * (in - 1) / (out - 1); nearest takes floor(i * in / out)."""
  h, w, oh, ow = 5, 7, 9, 13
  rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
  ramp = np.stack([3. * rows + 2. * cols, rows - cols], -1)[None].astype(np.float32)
  sr, sc = np.meshgrid(np.arange(oh) * (h - 1) / (oh - 1), np.arange(ow) * (w - 1) / (ow - 1),
                       indexing="ij")
  expected = np.stack([3. * sr + 2. * sc, sr - sc], -1)[None]
  out = ffnet_head.upsample(jnp.asarray(ramp), (oh, ow), "bilinear")
  np.testing.assert_allclose(np.asarray(out), expected, atol=1e-4)
  out = ffnet_head.upsample(jnp.asarray(ramp), (oh, ow), "nearest")
  np.testing.assert_array_equal(
      np.asarray(out), ramp[:, (np.arange(oh) * h) // oh][:, :, (np.arange(ow) * w) // ow])
  with pytest.raises(ValueError, match="upsample"):
    ffnet_head.upsample(jnp.asarray(ramp), (oh, ow), "bicubic")


def test_forward_pass_trains_batch_stats():
  """One compiled step of a shallow mobile pre_down model (parameters drawn
  from their shapes, so the random init is not compiled)."""
  model = ffnet.ffnet("ffnet46NS_CCC_mobile_pre_down", num_classes=5,
                      backbone_args={"depths": (1, 1, 1)})
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 64, 96, 3)), jnp.float32)
  rng = np.random.default_rng(3)
  variables = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape, scale=0.05), s.dtype),
                           _init_shapes(model, (64, 96))[0])
  step = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
  (outputs, aux), updated = step(variables, x)
  assert outputs["logits"].shape == (2, 8, 12, 5) and outputs["logits"].dtype == jnp.float32
  assert np.isfinite(np.asarray(outputs["logits"])).all()
  assert [a.shape[1:3] for a in aux["up"]] == [(8, 12), (4, 6), (2, 3), (1, 2)]
  before = variables["batch_stats"]["head"]["seg"]["bn"]["mean"]
  assert not np.allclose(before, updated["batch_stats"]["head"]["seg"]["bn"]["mean"])


def test_bfloat16_compute_keeps_float32_params():
  model = ffnet.ffnet18_dAAA(dtype=jnp.bfloat16)
  variables, (outputs, aux) = _init_shapes(model)
  assert {p.dtype for p in jax.tree.leaves(variables["params"])} == {jnp.dtype(jnp.float32)}
  assert aux["C3"].dtype == jnp.bfloat16 and outputs["logits"].dtype == jnp.float32


# The released segmentation models, as the official models/ffnet_*.py list them.
VARIANT_NAMES = {
    *(f"ffnet{d}_AAA" for d in (150, 134, 101, 86, 56, 50, 34)),
    *(f"ffnet{d}_ABB" for d in (150, 86, 56, 34)),
    "ffnet150S_BBB", "ffnet86S_BBB", "ffnet122N_CBB", "ffnet74N_CBB", "ffnet46N_CBB",
    *(f"ffnet{d}_dAAA" for d in (150, 134, 101, 86, 56, 50, 34, 18)),
    *(f"ffnet{d}_dAAC" for d in (150, 86, 34, 18)),
    "ffnet150S_dBBB", "ffnet86S_dBBB",
    *(f"ffnet{d}S_dBBB_mobile" for d in (86, 78, 54, 40)),
    *(f"ffnet{d}S_{h}_mobile{p}" for d in (150, 86, 78, 54, 40) for h in ("BBB", "BCC")
      for p in ("", "_pre_down")),
    *(f"ffnet{d}NS_{h}_mobile{p}" for d in (122, 74, 46) for h in ("CBB", "CCC")
      for p in ("", "_pre_down")),
}
