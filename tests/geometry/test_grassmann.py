"""Grassmann geometry: identities, scipy references, custom VJPs at degenerate points."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from jax.test_util import check_grads

from vision_jax.geometry import grassmann as gr


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def point(seed, d=7, k=3, batch=()):
  return gr.random_point(jax.random.PRNGKey(seed), (*batch, d, k), jnp.float64)


def tangent_vector(seed, S, scale=1.0):
  G = jax.random.normal(jax.random.PRNGKey(1000 + seed), S.shape, S.dtype)
  return scale * gr.tangent(S, G)


def test_random_point_is_orthonormal_and_batched():
  S = point(0, 9, 4, batch=(5,))
  np.testing.assert_allclose(gr.mT(S) @ S, np.broadcast_to(np.eye(4), (5, 4, 4)), atol=1e-13)
  assert not np.allclose(S[0], S[1])


def test_tangent_is_orthogonal_to_the_point_and_idempotent():
  S = point(1)
  D = tangent_vector(1, S)
  np.testing.assert_allclose(gr.mT(S) @ D, 0, atol=1e-13)
  np.testing.assert_allclose(gr.tangent(S, D), D, atol=1e-13)


def test_expmap_equals_the_block_matrix_exponential():
  # EAS Cor. 2.2 in QR form: [S Q] expm([[0, -R^T], [R, 0]]) [I; 0] for D = QR.
  S = point(2)
  D = tangent_vector(2, S, 0.7)
  Q, R = np.linalg.qr(np.asarray(D))
  k = S.shape[1]
  block = np.block([[np.zeros((k, k)), -R.T], [R, np.zeros((k, k))]])
  want = np.hstack([S, Q]) @ scipy.linalg.expm(block)[:, :k]
  np.testing.assert_allclose(gr.expmap(S, D), want, atol=1e-12)


@pytest.mark.parametrize("largest", [1e-6, 0.5, 30.0, 1e4])
def test_cos_sinc_sqrt_equals_the_eigendecomposition(largest):
  # Large norms exercise the scaling and the double-angle steps.
  V = gr.random_point(jax.random.PRNGKey(20), (5, 5), jnp.float64)
  eigenvalues = jnp.array([0.0, 1e-9, 0.3, largest / 2, largest])
  A = (V * eigenvalues) @ V.T
  root = np.sqrt(np.asarray(eigenvalues))
  cos, sinc = gr.cos_sinc_sqrt(A)
  np.testing.assert_allclose(cos, (V * np.cos(root)) @ V.T, atol=1e-12 * max(1.0, largest))
  np.testing.assert_allclose(sinc, (V * np.sinc(root / np.pi)) @ V.T, atol=1e-13 * max(1.0, largest))


def test_reorthonormalize_removes_drift_like_the_polar_factor():
  S = point(21, 9, 4)
  drifted = S + 1e-4 * jax.random.normal(jax.random.PRNGKey(22), S.shape, S.dtype)
  fixed = gr.reorthonormalize(drifted)
  np.testing.assert_allclose(gr.mT(fixed) @ fixed, np.eye(4), atol=1e-14)
  np.testing.assert_allclose(fixed, gr.polar(drifted), atol=1e-14)


def test_expmap_stays_on_the_manifold_and_is_identity_at_zero():
  S = point(3, batch=(4,))
  D = tangent_vector(3, S, 2.0)
  Y = gr.expmap(S, D)
  np.testing.assert_allclose(gr.mT(Y) @ Y, np.broadcast_to(np.eye(3), (4, 3, 3)), atol=1e-12)
  np.testing.assert_allclose(gr.expmap(S, jnp.zeros_like(S)), S, atol=0)


@pytest.mark.parametrize("dtype, tol", [(jnp.float64, 1e-12), (jnp.float32, 2e-5)])
def test_distance_of_a_geodesic_step_is_lr_times_norm(dtype, tol):
  S = point(4, 16, 4).astype(dtype)
  delta = tangent_vector(4, S)
  lr = 0.05
  step = gr.expmap(S, -lr * delta)
  want = lr * np.linalg.norm(np.asarray(delta, np.float64))
  np.testing.assert_allclose(gr.distance(S, step), want, rtol=tol)


def test_principal_angles_equal_scipy_subspace_angles():
  A, B = point(5, 10, 4), point(6, 10, 4)
  np.testing.assert_allclose(gr.principal_angles(A, B),
                             np.sort(scipy.linalg.subspace_angles(A, B)), atol=1e-12)
  # Small angles keep their digits (arcsin branch); arccos(cos) would lose them.
  near = gr.expmap(A, tangent_vector(5, A, 1e-9))
  np.testing.assert_allclose(gr.principal_angles(A, near),
                             np.sort(scipy.linalg.subspace_angles(A, near)), rtol=1e-6, atol=1e-20)


def test_distance_ignores_the_basis():
  A = point(7)
  Q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
  np.testing.assert_allclose(gr.distance(A, A @ Q), 0, atol=1e-7)
  B = point(8)
  np.testing.assert_allclose(gr.distance(A @ Q, B), gr.distance(A, B), atol=1e-12)


def test_retractions_agree_with_the_geodesic_to_second_order():
  S = point(9)
  D = tangent_vector(9, S)
  for name in ("qr", "polar"):
    retract = gr.RETRACTIONS[name]
    errors = [float(gr.distance(retract(S, t * D), gr.expmap(S, t * D))) for t in (1e-2, 1e-3)]
    assert errors[1] < errors[0] / 50, (name, errors)  # O(t^2) or better.
    Y = retract(S, D)
    np.testing.assert_allclose(gr.mT(Y) @ Y, np.eye(3), atol=1e-12)


def test_polar_equals_scipy_polar_and_fixes_orthonormal_matrices():
  W = jax.random.normal(jax.random.PRNGKey(10), (8, 3), jnp.float64)
  np.testing.assert_allclose(gr.polar(W), scipy.linalg.polar(np.asarray(W))[0], atol=1e-12)
  S = point(10, 8, 3)
  np.testing.assert_allclose(gr.polar(S), S, atol=1e-13)


def test_custom_vjps_equal_finite_differences_at_generic_points():
  S = point(11)
  D = tangent_vector(11, S, 0.8)
  check_grads(gr.expmap, (S, D), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)
  W = S + 0.3 * jax.random.normal(jax.random.PRNGKey(12), S.shape, S.dtype)
  check_grads(gr.polar, (W,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def _autodiff_expmap(S, D):
  U, s, Vt = jnp.linalg.svd(D, full_matrices=False)
  return (S @ gr.mT(Vt) * jnp.cos(s)[None, :] + U * jnp.sin(s)[None, :]) @ Vt


@pytest.mark.parametrize("kind", ["zero", "repeated"])
def test_expmap_gradient_is_exact_where_svd_autodiff_is_not(kind):
  S = point(13)
  if kind == "zero":
    D = jnp.zeros_like(S)
  else:  # All three singular values 0.4.
    D = 0.4 * gr.orthonormalize(tangent_vector(13, S))
  loss = lambda f: lambda D: jnp.sum(jnp.sin(f(S, D)) * jnp.arange(S.size).reshape(S.shape))
  grad = jax.grad(loss(gr.expmap))(D)
  assert np.all(np.isfinite(grad))
  autodiff = jax.grad(loss(_autodiff_expmap))(D)  # Divides by s_i^2 - s_j^2 ~ 0.
  assert not np.allclose(autodiff, grad, rtol=1e-3, atol=1e-3)
  check_grads(loss(gr.expmap), (D,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_polar_gradient_is_exact_at_orthonormal_input():
  S = point(14, 6, 3)  # W^T W = I: every eigenvalue repeated.
  weights = jnp.arange(S.size, dtype=S.dtype).reshape(S.shape)
  loss = lambda W: jnp.sum(gr.polar(W) * weights)
  assert np.all(np.isfinite(jax.grad(loss)(S)))
  check_grads(loss, (S,), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_squared_distance_gradient_where_subspaces_meet():
  A = point(15)
  grad_a, grad_b = jax.grad(gr.squared_distance, argnums=(0, 1))(A, A)
  assert np.all(np.isfinite(grad_a)) and np.all(np.isfinite(grad_b))
  np.testing.assert_allclose(gr.tangent(A, grad_a), 0, atol=1e-12)  # A minimum.


@pytest.mark.parametrize("offset", [1.0, 1e-4])
@pytest.mark.parametrize("argnum", [0, 1])
def test_squared_distance_gradient_along_geodesics(offset, argnum):
  # Inputs are orthonormal, so the gradient is checked along curves on the
  # manifold: <grad, D> = d/dh squared_distance(exp(h D)) at h = 0, for
  # generic and for nearly coincident subspaces.
  A = point(17)
  B = gr.expmap(A, tangent_vector(17, A, offset))
  args = [A, B]
  D = tangent_vector(18, args[argnum])
  grad = jax.grad(gr.squared_distance, argnums=argnum)(A, B)

  def moved(h):
    shifted = list(args)
    shifted[argnum] = gr.expmap(args[argnum], h * D)
    return gr.squared_distance(*shifted)

  h = 1e-6
  np.testing.assert_allclose(jnp.sum(grad * D), (moved(h) - moved(-h)) / (2 * h), rtol=1e-6)
