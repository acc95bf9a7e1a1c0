"""CATNet's necks (DenseFPN, SCP): exact parameter counts (reference dense.md
Sec. 6), declared against real levels, resampling against PyTorch, the dense
fusion against a PyTorch re-computation of the official forward, and the
RetinaNet that takes them (the FPN one unchanged)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import config as config_lib
from vision_jax.models import features, retinanet
from vision_jax.models.necks import dense_fpn, scp
from test_detection import TINY_BACKBONE, _count, _params

R50 = {"C2": 256, "C3": 512, "C4": 1024, "C5": 2048}


def _levels(strides, hw=(64, 64), channels=R50):
  names = [f"C{s.bit_length() - 1}" for s in strides]
  return {n: jnp.zeros((1, -(-hw[0] // s), -(-hw[1] // s), channels[n])) for n, s in
          zip(names, strides)}


def _init_shapes(module, *args):
  return jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *args))


@pytest.mark.parametrize("strides, total, laterals, extra", [
    ((8, 16, 32), 12_800_530, 919_040, 1_180_672),  # CATNet: P3-P7.
    ((4, 8, 16, 32), 12_276_242, 985_088, 590_336)])  # CAT Mask R-CNN: P2-P6.
def test_dense_fpn_parameter_counts(strides, total, laterals, extra):
  params = _init_shapes(dense_fpn.DenseFPN(in_strides=strides), _levels(strides))["params"]
  part = lambda prefix: _count({k: v for k, v in params.items() if k.startswith(prefix)})
  assert _count(params) == total
  assert (part("lateral"), part("extra"), part("stack")) == (laterals, extra, 10_700_800)
  assert part("stack0_td0") == 214_016  # 1x1 256->128, 3x3 128->128, 1x1 128->256 + BNs.
  weights = {k: v.shape for k, v in params.items() if "weight" in k}  # One set for 5 stacks.
  assert weights == {"td_weight0": (4,), "td_weight1": (3,), "td_weight2": (2,),
                     "bu_weight2": (2,), "bu_weight3": (3,), "bu_weight4": (4,)}


def test_scp_parameter_counts():
  pyramid = {f"P{i}": jnp.zeros((1, 4, 4, 256)) for i in range(3, 8)}
  params = _init_shapes(scp.SCP(), pyramid)["params"]
  assert _count(params) == 660_490 and _count(params["block0"]) == 132_098


def test_declared_levels_are_the_real_outputs():
  hw = (100, 76)  # Odd level sizes: C3 13x10 ... P7 1x1.
  neck = dense_fpn.DenseFPN(features=16, stack_times=1)
  inputs = _levels((4, 8, 16, 32), hw)
  declared = neck.feature_levels({n: features.Level(2**int(n[1:]), x.shape[-1])
                                  for n, x in inputs.items()})
  outs = jax.eval_shape(lambda: neck.init_with_output(jax.random.PRNGKey(0), inputs)[0])
  assert list(outs) == list(declared) == ["P3", "P4", "P5", "P6", "P7"]
  for name, level in declared.items():
    assert outs[name].shape == (1, -(-hw[0] // level.stride), -(-hw[1] // level.stride), 16)
  after = jax.eval_shape(lambda o: scp.SCP(16).init_with_output(jax.random.PRNGKey(0), o)[0], outs)
  assert {n: x.shape for n, x in after.items()} == {n: x.shape for n, x in outs.items()}
  with pytest.raises(ValueError, match=r"DenseFPN needs feature strides \(8, 16, 32\)"):
    neck.feature_levels({"C2": features.Level(4, 256)})


def test_resampling_matches_torch():
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(0).normal(size=(2, 13, 11, 3)).astype(np.float32)
  tx = torch.from_numpy(x).permute(0, 3, 1, 2)
  back = lambda t: t.permute(0, 2, 3, 1).numpy()
  sizes = [(7, 6), (4, 3), (5, 5), (1, 1), (13, 11), (6, 4)]
  pooled = jax.jit(lambda a: [dense_fpn.adaptive_max_pool(a, size) for size in sizes])(x)
  for size, got in zip(sizes, pooled):
    np.testing.assert_array_equal(np.asarray(got), back(F.adaptive_max_pool2d(tx, size)))
  sizes = [(25, 21), (26, 22), (100, 7), (13, 11), (40, 33)]
  resized = jax.jit(lambda a: [dense_fpn.resize_bilinear(a, size) for size in sizes])(x)
  for size, got in zip(sizes, resized):
    ref = back(F.interpolate(tx, size=size, mode="bilinear", align_corners=False))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5)


def _torch_dense_fpn(p, s, inputs, num_outs, stack_times):
  """The official DenseFPN forward written out in PyTorch with our parameters."""
  import torch  # pylint: disable=import-outside-toplevel
  import torch.nn.functional as F  # pylint: disable=import-outside-toplevel
  t = lambda a: torch.from_numpy(np.array(a))

  def conv_bn(x, p, s, stride=1):
    kernel = t(p["conv"]["kernel"]).permute(3, 2, 0, 1)
    x = F.conv2d(x, kernel, stride=stride, padding=kernel.shape[-1] // 2)
    return F.batch_norm(x, t(s["bn"]["mean"]), t(s["bn"]["var"]), t(p["bn"]["scale"]),
                        t(p["bn"]["bias"]), False, 0.0, 1e-5)

  def block(x, name):
    for i in range(3):
      x = conv_bn(x, p[name][f"conv{i}"], s[name][f"conv{i}"])
    return x

  lat = [conv_bn(t(x).permute(0, 3, 1, 2), p[f"lateral{i}"], s[f"lateral{i}"])
         for i, x in enumerate(inputs)]
  for i in range(len(lat), num_outs):
    lat.append(conv_bn(lat[-1], p[f"extra{i}"], s[f"extra{i}"], stride=2))
  n = num_outs
  for stack in range(stack_times):
    td = [None] * n
    for i in range(n - 1, -1, -1):
      atts = t(p[f"td_weight{i}"]).softmax(0) if i < n - 2 else [1]
      fused = lat[i] + sum(atts[j] * F.interpolate(lat[n - j - 1], size=lat[i].shape[2:],
                                                   mode="bilinear", align_corners=False)
                           for j in range(n - i - 1))
      td[i] = block(F.relu(fused), f"stack{stack}_td{i}")
    bu = []
    for i in range(n):
      atts = t(p[f"bu_weight{i}"]).softmax(0) if i > 1 else [1]
      fused = lat[i] + td[i] + sum(atts[j] * F.adaptive_max_pool2d(td[j], lat[i].shape[2:])
                                   for j in range(i))
      bu.append(block(F.relu(fused), f"stack{stack}_bu{i}"))
    lat = bu
  return [x.permute(0, 2, 3, 1).numpy() for x in lat]


def test_dense_fusion_matches_the_official_forward():
  """One stack (P3-P7 from C3-C5) with random kernels, BN affine and
  statistics, and non-uniform weights: softmax over all coarser laterals
  (bilinear) and finer top-down maps (adaptive max pooling), weight 1 where
  the official code has [1]."""
  neck = dense_fpn.DenseFPN(features=8, stack_times=1)
  rng = np.random.default_rng(0)
  channels = {"C3": 5, "C4": 6, "C5": 7}
  inputs = {n: rng.normal(size=(2, h, w, channels[n])).astype(np.float32)
            for n, (h, w) in zip(channels, [(13, 11), (7, 6), (4, 3)])}

  def draw(path, x):  # Values for the declared shapes; no init run.
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      return rng.normal(0, np.prod(x.shape[:-1]) ** -0.5, x.shape).astype(np.float32)
    if "var" in name or "scale" in name:
      return rng.uniform(0.5, 1.5, x.shape).astype(np.float32)
    return rng.normal(0, 0.5 if "weight" in name else 0.1, x.shape).astype(np.float32)

  variables = jax.tree_util.tree_map_with_path(draw, _init_shapes(neck, inputs))
  outs = jax.jit(lambda v, x: neck.apply(v, x, train=False))(variables, inputs)
  ref = _torch_dense_fpn(variables["params"], variables["batch_stats"], list(inputs.values()),
                         5, 1)
  for got, want in zip(outs.values(), ref):
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-4, atol=2e-4)


def test_context_aggregation_is_the_direct_form():
  """out = x + sigmoid(a x) * m(sum_p softmax(k x)_p v x_p), v on the full map
  (NumPy); with m's zero init the block starts as the identity."""
  block = scp.ContextAggregation(features=6)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 5, 3, 6)).astype(np.float32)
  apply = jax.jit(block.apply)
  variables = jax.jit(block.init)(jax.random.PRNGKey(0), x)
  np.testing.assert_array_equal(np.asarray(apply(variables, x)), x)
  params = jax.tree.map(lambda a: np.asarray(a) + rng.normal(0, 0.1, a.shape).astype(np.float32),
                        variables["params"])
  conv = lambda name, y: y @ params[name]["kernel"][0, 0] + params[name]["bias"]
  a = 1 / (1 + np.exp(-conv("a", x)))
  k = np.exp(conv("k", x).reshape(2, -1))
  k /= k.sum(-1, keepdims=True)
  context = np.einsum("bp,bpc->bc", k, conv("v", x).reshape(2, 15, 6))
  want = x + a * conv("m", context)[:, None, None]
  np.testing.assert_allclose(np.asarray(apply({"params": params}, x)), want, rtol=1e-5, atol=1e-5)


def test_retinanet_fpn_neck_is_unchanged():
  params = _params(retinanet.RetinaNet(backbone="pvt_tiny", neck="fpn", num_classes=80))
  assert _count(params) == 22_964_724 and set(params) == {"backbone", "fpn", "head"}
  assert retinanet.RetinaNet().neck == "fpn"


def test_catnet_is_retinanet_r50_dense_fpn_scp():
  """23,508,032 (ResNet-50 trunk) + 12,800,530 + 660,490 + 6,463,220 (head, 80 classes)."""
  model = retinanet.catnet(num_classes=80)
  seen = []
  with _recording_train(seen):
    params = _params(model, (64, 64))  # train=False.
  assert seen == [False] * 155
  assert {k: _count(v) for k, v in params.items()} == {
      "backbone": 23_508_032, "dense_fpn": 12_800_530, "scp": 660_490, "head": 6_463_220}
  assert _count(params) == 43_432_272
  assert {n: (l.stride, l.channels) for n, l in model.feature_levels().items()} == {
      "P3": (8, 256), "P4": (16, 256), "P5": (32, 256), "P6": (64, 256), "P7": (128, 256)}
  config_lib.check_model("retinanet", {"backbone": "resnet50", "neck": "dense_fpn_scp"}, "model")
  with pytest.raises(ValueError, match=r"neck 'bifpn' is not one of \('fpn', 'dense_fpn_scp'\)"):
    retinanet.RetinaNet(neck="bifpn").feature_levels()


def _recording_train(seen):
  """An interceptor noting the `train` of every neck ConvBN call."""
  def record(next_fn, args, kwargs, context):
    if isinstance(context.module, dense_fpn.ConvBN):
      seen.append(kwargs["train"])
    return next_fn(*args, **kwargs)
  return nn.intercept_methods(record)


def test_catnet_passes_train_to_its_neck_batch_norm():
  """Traced only: every BatchNorm of the neck sees the detector's train=True
  (train=False: test_catnet_is_retinanet_r50_dense_fpn_scp)."""
  model = retinanet.RetinaNet(backbone="pvt_tiny", backbone_args=TINY_BACKBONE, num_classes=3,
                              neck="dense_fpn_scp", fpn_features=16, head_features=16,
                              head_convs=1)
  seen, levels = [], []

  def forward():
    (outputs, aux), variables = model.init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((1, 64, 96, 3)), train=True)
    levels.append(aux["levels"])
    return outputs, variables

  with _recording_train(seen):
    outputs, variables = jax.eval_shape(forward)
  assert seen == [True] * (3 + 2 + 5 * 10 * 3)  # Laterals, extras, 5 stacks of 10 blocks.
  assert levels[0] == ((8, 12), (4, 6), (2, 3), (1, 2), (1, 1))
  assert outputs["cls"].shape == (1, 9 * sum(h * w for h, w in levels[0]), 3)
  assert set(variables["batch_stats"]) == {"dense_fpn"}  # PVT has no BatchNorm.
