"""GCR head and classifier: logit identities, invariances, parameter counts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import config as config_lib
from vision_jax.geometry import grassmann as gr
from vision_jax.models import gcr
from vision_jax.models.backbones import pvt, resnet


def head_and_params(num_classes=5, d=16, k=3, gamma=25.0, seed=0):
  head = gcr.GrassmannHead(num_classes, k, gamma)
  params = head.init(jax.random.PRNGKey(seed), jnp.zeros((1, d)))["params"]
  return head, params


def features(seed, n=32, d=16):
  return jax.random.normal(jax.random.PRNGKey(100 + seed), (n, d)) * 3.0


def test_logits_are_the_scaled_projection_norms():
  head, params = head_and_params()
  x = features(0)
  S = np.asarray(params["subspaces"], np.float64)
  x_hat = np.asarray(x, np.float64) / np.linalg.norm(x, axis=-1, keepdims=True)
  want = 25.0 * np.linalg.norm(np.einsum("bd,cdk->bck", x_hat, S), axis=-1)
  np.testing.assert_allclose(head.apply({"params": params}, x), want, rtol=1e-5)


def test_logits_lie_in_zero_to_gamma_with_both_ends_reached():
  head, params = head_and_params(gamma=7.0)
  S = params["subspaces"]
  logits = head.apply({"params": params}, features(1, n=256))
  assert float(logits.min()) >= 0.0 and float(logits.max()) <= 7.0 + 1e-5
  inside = 4.0 * S[2, :, 0] - S[2, :, 1]  # In span(S_2): logit gamma.
  outside = gr.tangent(S[3], jax.random.normal(jax.random.PRNGKey(0), (16, 1)))[:, 0]
  at_ends = head.apply({"params": params}, jnp.stack([inside, outside]))
  np.testing.assert_allclose(at_ends[0, 2], 7.0, rtol=1e-6)
  np.testing.assert_allclose(at_ends[1, 3], 0.0, atol=1e-4)


def test_logits_depend_on_the_subspace_not_the_basis():
  head, params = head_and_params()
  x = features(2)
  base = head.apply({"params": params}, x)
  Q = gr.random_point(jax.random.PRNGKey(7), (5, 3, 3))  # Orthogonal k x k per class.
  rotated = {"subspaces": params["subspaces"] @ Q}
  np.testing.assert_allclose(head.apply({"params": rotated}, x), base, rtol=1e-5, atol=1e-5)
  drifted = params["subspaces"] + 1e-3 * jax.random.normal(jax.random.PRNGKey(8), (5, 16, 3))
  reorth = {"subspaces": gr.orthonormalize(drifted)}
  expected = head.apply({"params": {"subspaces": gr.polar(drifted)}}, x)  # Same span.
  np.testing.assert_allclose(head.apply({"params": reorth}, x), expected, rtol=1e-5, atol=1e-5)


def test_gradient_is_finite_for_a_feature_orthogonal_to_a_subspace():
  head, params = head_and_params()
  x = gr.tangent(params["subspaces"][0], features(3, n=3).T).T  # Orthogonal to S_0.
  grad = jax.grad(lambda p: head.apply({"params": p}, x)[:, 0].sum())(params)
  assert np.all(np.isfinite(grad["subspaces"]))


def _count(model, size=64):
  shapes = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, size, size, 3)), train=False))
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes["params"]))


def test_parameter_count_replaces_the_linear_head_with_c_times_d_times_k():
  # ResNet50-D: 25,576,264 with a 2048 x 1000 linear head (+ bias).
  model = gcr.GrassmannClassifier(num_classes=1000, backbone="resnet50d", subspace_dim=8)
  assert _count(model) == 25_576_264 - (2048 * 1000 + 1000) + 1000 * 2048 * 8


def test_classifier_output_and_features_match_the_backbone():
  model = gcr.GrassmannClassifier(num_classes=4, backbone="resnet18",
                                  backbone_args={"width": 8, "small_input": True})
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  variables = model.init(jax.random.PRNGKey(1), x)
  logits, aux = model.apply(variables, x)
  assert logits.shape == (2, 4) and aux["pre_logits"].shape == (2, 64)
  plain = resnet.resnet18(num_classes=0, width=8, small_input=True)
  features, _ = plain.apply({"params": variables["params"]["backbone"],
                             "batch_stats": variables["batch_stats"]["backbone"]}, x)
  np.testing.assert_allclose(aux["pre_logits"], features, rtol=1e-6)


def test_pvt_backbone_without_head_feeds_the_gcr_head():
  kwargs = {"embed_dims": (8, 16, 16, 16), "num_heads": (1, 1, 1, 1), "depths": (1, 1, 1, 1)}
  model = gcr.GrassmannClassifier(num_classes=3, backbone="pvt_tiny", backbone_args=kwargs,
                                  subspace_dim=4)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 64, 64, 3))
  variables = model.init(jax.random.PRNGKey(1), x)
  logits, aux = model.apply(variables, x)
  assert logits.shape == (2, 3) and variables["params"]["head"]["subspaces"].shape == (3, 16, 4)
  assert "head" not in variables["params"]["backbone"]  # num_classes=0: no linear head.
  features, _ = pvt.pvt_tiny(num_classes=0, **kwargs).apply(
      {"params": variables["params"]["backbone"]}, x)
  np.testing.assert_allclose(aux["pre_logits"], features, rtol=1e-6)


def test_unknown_backbone_argument_is_a_config_error():
  with pytest.raises(config_lib.ConfigError, match="'model.backbone_args.widht'.*'width'"):
    config_lib.check_model("gcr", {"num_classes": 4, "backbone": "resnet18",
                                   "backbone_args": {"widht": 8}}, "model")
  with pytest.raises(config_lib.ConfigError, match="'model.backbone'.*Did you mean 'resnet18'"):
    config_lib.check_model("gcr", {"num_classes": 4, "backbone": "resnet81"}, "model")


