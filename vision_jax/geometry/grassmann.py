"""The Grassmann manifold Gr(k, d) of k-dimensional subspaces of R^d.

A point is stored as S in R^{..., d, k} with orthonormal columns (S^T S = I),
a representative of span(S); every map works on the trailing two axes and
batches over the leading ones (e.g. one subspace per class, [C, d, k]).
Formulas: Edelman, Arias & Smith, "The Geometry of Algorithms with
Orthogonality Constraints", SIAM J. Matrix Anal. Appl. 1998 (EAS), and
Absil, Mahony & Sepulchre, "Optimization Algorithms on Matrix Manifolds", 2008.

  tangent(S, G)            (I - S S^T) G: the Riemannian gradient / tangent part (EAS 2.70)
  expmap(S, D)             geodesic (EAS Thm 2.3): with the thin SVD D = U diag(s) V^T,
                           S(1) = (S V cos(s) + U sin(s)) V^T = S cos(sqrt(A)) + D sinc(sqrt(A)),
                           A = D^T D, evaluated by matrix products (`cos_sinc_sqrt`);
                           custom VJP, stable at repeated or zero singular values
  qr_retraction(S, D)      qf(S + D), Q with a positive-diagonal R
  polar_retraction(S, D)   polar factor of S + D; custom VJP (repeated eigenvalues)
  orthonormalize(W)        qf(W) (GCR re-orthonormalises by QR)
  polar(W)                 W (W^T W)^{-1/2}
  reorthonormalize(W)      polar(W) by Newton-Schulz, for nearly orthonormal W (products only)
  principal_angles(A, B)   sorted ascending; arcsin of the sines for small angles,
                           arccos of the cosines for large (Knyazev & Argentati 2002)
  squared_distance(A, B)   sum of squared principal angles; custom VJP, finite and
                           exact where subspaces meet (autodiff of the SVD is NaN there)
  distance(A, B)           the geodesic distance sqrt(squared_distance)
  random_point(key, shape) Haar-uniform: qf of a Gaussian matrix (GCR's init)

Backward passes: expmap and polar are functions F(A) of the k x k Gram matrix
A = D^T D (or W^T W) with A = V diag(l) V^T. For F(A) = V f(l) V^T the
cotangent is V (L o (V^T F_bar V)) V^T with the Loewner matrix
L_ij = (f(l_i) - f(l_j)) / (l_i - l_j), L_ii = f'(l_i) (Daleckii-Krein), which
is evaluated here in closed forms (or a quadrature) that have no 1/(l_i - l_j)
and so stay exact when eigenvalues coincide. Autodiff of `jnp.linalg.svd` or
`eigh` divides by those gaps and returns inf/NaN there (e.g. D = 0, W = S).
"""
import math
import types

import jax
import jax.numpy as jnp
import numpy as np


def mT(x: jax.Array) -> jax.Array:
  """Transpose of the trailing two axes."""
  return jnp.swapaxes(x, -1, -2)


def tangent(S: jax.Array, G: jax.Array) -> jax.Array:
  """(I - S S^T) G: projects an ambient matrix onto the tangent space at S."""
  return G - S @ (mT(S) @ G)


def _sinc(x: jax.Array) -> jax.Array:
  """sin(x) / x, 1 at 0 (jnp.sinc is sin(pi x) / (pi x))."""
  return jnp.sinc(x / jnp.pi)


def _gauss_legendre_01(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
  """Nodes and weights of n-point Gauss-Legendre quadrature on [0, 1]."""
  nodes, weights = np.polynomial.legendre.leggauss(n)
  return (nodes + 1) / 2, weights / 2


def _loewner_cos(a: jax.Array) -> jax.Array:
  """Divided differences of f(l) = cos(sqrt(l)) at l = a^2 (a >= 0):
  (cos a_i - cos a_j) / (a_i^2 - a_j^2) = -1/2 sinc((a_i + a_j)/2) sinc((a_i - a_j)/2)."""
  ai, aj = a[..., :, None], a[..., None, :]
  return -0.5 * _sinc((ai + aj) / 2) * _sinc((ai - aj) / 2)


def _loewner_sinc(a: jax.Array) -> jax.Array:
  """Divided differences of f(l) = sin(sqrt(l)) / sqrt(l) at l = a^2. With
  f(l) = int_0^1 cos(t sqrt(l)) dt, they are int_0^1 t^2 L_cos(t a) dt, an
  entire integrand, so Gauss-Legendre with 12 nodes is exact to rounding for
  angles up to pi."""
  nodes, weights = _gauss_legendre_01()
  out = 0.0
  for t, w in zip(nodes, weights):
    out = out + (w * t * t) * _loewner_cos(t * a)
  return out


def _loewner_inv_sqrt(l: jax.Array) -> jax.Array:
  """Divided differences of f(l) = l^{-1/2}: -1 / (sqrt(l_i l_j) (sqrt(l_i) + sqrt(l_j)))."""
  r = jnp.sqrt(l)
  ri, rj = r[..., :, None], r[..., None, :]
  return -1.0 / (ri * rj * (ri + rj))


def _gram_cotangent(W: jax.Array, V: jax.Array, loewner_times: jax.Array) -> jax.Array:
  """Cotangent of W through A = W^T W, given sum_f L_f o (V^T F_bar V) (the
  Loewner-weighted cotangents in the eigenbasis V of A)."""
  A_bar = V @ loewner_times @ mT(V)
  return W @ (A_bar + mT(A_bar))


# cos(sqrt(A)) and sinc(sqrt(A)) of a PSD k x k matrix: Taylor series in A
# scaled by 4^-n to norm <= 1 (truncation below 1/20!), then n double-angle steps.
SERIES_TERMS = 10
MAX_DOUBLINGS = 30


def _series(B: jax.Array, coefficients: list[float]) -> jax.Array:
  """sum_n coefficients[n] B^n by Horner's rule."""
  eye = jnp.broadcast_to(jnp.eye(B.shape[-1], dtype=B.dtype), B.shape)
  out = coefficients[-1] * eye
  for a in reversed(coefficients[:-1]):
    out = a * eye + B @ out
  return out


def cos_sinc_sqrt(A: jax.Array) -> tuple[jax.Array, jax.Array]:
  """cos(sqrt(A)) and sin(sqrt(A)) / sqrt(A) for symmetric PSD A [..., k, k], by
  matrix products only: the series sum (-1)^n A^n / (2n)! and
  sum (-1)^n A^n / (2n+1)! of A / 4^m, then m steps of cos 2x = 2 cos^2 x - 1
  and sinc 2x = sinc x cos x. No LAPACK call, so it batches and shards like a
  matmul on every backend."""
  norm = jnp.sqrt(jnp.sum(A * A, axis=(-2, -1)))  # >= the spectral norm.
  doublings = jnp.clip(jnp.ceil(jnp.log(jnp.maximum(norm, 1e-30)) / np.log(4.0)),
                       0, MAX_DOUBLINGS).astype(jnp.int32)
  B = A * (0.25 ** doublings.astype(A.dtype))[..., None, None]
  cos = _series(B, [(-1) ** n / math.factorial(2 * n) for n in range(SERIES_TERMS)])
  sinc = _series(B, [(-1) ** n / math.factorial(2 * n + 1) for n in range(SERIES_TERMS)])
  eye = jnp.eye(A.shape[-1], dtype=A.dtype)

  def double(i, cs):
    c, sc = cs
    active = (i < doublings)[..., None, None]
    return jnp.where(active, 2 * c @ c - eye, c), jnp.where(active, sc @ c, sc)

  return jax.lax.fori_loop(0, jnp.max(doublings), double, (cos, sinc))


@jax.custom_vjp
def expmap(S: jax.Array, D: jax.Array) -> jax.Array:
  """Geodesic from span(S) along the tangent D (S^T D = 0), at time 1 (EAS Thm 2.3):
  with the thin SVD D = U diag(s) V^T it is (S V cos(s) + U sin(s)) V^T, which
  equals S cos(sqrt(D^T D)) + D sinc(sqrt(D^T D)); the latter is computed."""
  return _expmap_fwd(S, D)[0]


def _expmap_fwd(S, D):
  cos_a, sinc_a = cos_sinc_sqrt(mT(D) @ D)
  return S @ cos_a + D @ sinc_a, (S, D)


def _expmap_bwd(res, g):
  # out = S cos(sqrt(A)) + D sinc(sqrt(A)) with A = D^T D = V diag(s^2) V^T.
  S, D = res
  eigenvalues, V = jnp.linalg.eigh(mT(D) @ D)
  s = jnp.sqrt(jnp.maximum(eigenvalues, 0.0))
  Vt = mT(V)
  cos_a = (V * jnp.cos(s)[..., None, :]) @ Vt
  sinc_a = (V * _sinc(s)[..., None, :]) @ Vt
  in_basis = lambda M: Vt @ M @ V
  weighted = (_loewner_cos(s) * in_basis(mT(S) @ g) + _loewner_sinc(s) * in_basis(mT(D) @ g))
  return g @ cos_a, g @ sinc_a + _gram_cotangent(D, V, weighted)


expmap.defvjp(_expmap_fwd, _expmap_bwd)


@jax.custom_vjp
def polar(W: jax.Array) -> jax.Array:
  """The orthonormal polar factor W (W^T W)^{-1/2} = U V^T of W = U diag(s) V^T (full rank)."""
  return _polar_fwd(W)[0]


def _polar_fwd(W):
  U, s, Vt = jnp.linalg.svd(W, full_matrices=False)
  return U @ Vt, (W, s, Vt)


def _polar_bwd(res, g):
  W, s, Vt = res
  V = mT(Vt)
  inv_sqrt = (V * (1.0 / s)[..., None, :]) @ Vt
  weighted = _loewner_inv_sqrt(s * s) * (Vt @ (mT(W) @ g) @ V)
  return (g @ inv_sqrt + _gram_cotangent(W, V, weighted),)


polar.defvjp(_polar_fwd, _polar_bwd)


def orthonormalize(W: jax.Array) -> jax.Array:
  """qf(W): the Q of W = QR with diag(R) > 0, so it is unique and continuous in W."""
  Q, R = jnp.linalg.qr(W)
  signs = jnp.where(jnp.diagonal(R, axis1=-2, axis2=-1) < 0, -1.0, 1.0).astype(W.dtype)
  return Q * signs[..., None, :]


def reorthonormalize(W: jax.Array, iterations: int = 3) -> jax.Array:
  """The polar factor of a nearly orthonormal W (||W^T W - I||_2 < 1), by the
  Newton-Schulz iteration W <- W (3I - W^T W) / 2 (Higham, "Functions of
  Matrices", 2008, Eq. 8.20), which squares the error each step. It removes
  rounding drift with the least change of basis, and uses products only."""
  eye = jnp.eye(W.shape[-1], dtype=W.dtype)
  for _ in range(iterations):
    W = W @ (1.5 * eye - 0.5 * (mT(W) @ W))
  return W


def qr_retraction(S: jax.Array, D: jax.Array) -> jax.Array:
  """qf(S + D) (Absil et al., Example 4.1.3)."""
  return orthonormalize(S + D)


def polar_retraction(S: jax.Array, D: jax.Array) -> jax.Array:
  """(S + D)(I + D^T D)^{-1/2}, the polar factor of S + D (Absil et al., Example 4.1.3)."""
  return polar(S + D)


# Name -> retraction(S, D); the optimizer picks one by name.
RETRACTIONS = types.MappingProxyType(
    {"geodesic": expmap, "qr": qr_retraction, "polar": polar_retraction})


def principal_angles(A: jax.Array, B: jax.Array) -> jax.Array:
  """The k principal angles between span(A) and span(B), ascending, in [0, pi/2]."""
  cosines = jnp.linalg.svd(mT(A) @ B, compute_uv=False)  # Descending.
  sines = jnp.linalg.svd(B - A @ (mT(A) @ B), compute_uv=False)[..., ::-1]  # Ascending.
  small = sines * sines < 0.5
  return jnp.where(small, jnp.arcsin(jnp.clip(sines, 0.0, 1.0)),
                   jnp.arccos(jnp.clip(cosines, 0.0, 1.0)))


@jax.custom_vjp
def squared_distance(A: jax.Array, B: jax.Array) -> jax.Array:
  """Sum of squared principal angles (the squared geodesic distance, EAS 2.4).

  A and B must be orthonormal; the gradient is that of sum_i arccos(s_i)^2
  over the singular values s of A^T B, which is tangent at both."""
  return jnp.sum(principal_angles(A, B) ** 2, axis=-1)


def _squared_distance_fwd(A, B):
  return squared_distance(A, B), (A, B)


def _squared_distance_bwd(res, g):
  # d = sum_i arccos(s_i)^2, s = singular values of M = A^T B. The gradient of a
  # function of singular values is U diag(dd/ds) V^T (Lewis 1995), with
  # dd/ds_i = -2 theta_i / sin(theta_i), which tends to -2 as theta_i -> 0.
  A, B = res
  U, s, Vt = jnp.linalg.svd(mT(A) @ B, full_matrices=False)
  theta = jnp.arccos(jnp.clip(s, -1.0, 1.0))
  M_bar = (U * (-2.0 / _sinc(theta))[..., None, :]) @ Vt * g[..., None, None]
  return B @ mT(M_bar), A @ M_bar


squared_distance.defvjp(_squared_distance_fwd, _squared_distance_bwd)


def distance(A: jax.Array, B: jax.Array) -> jax.Array:
  """Geodesic distance ||theta||_2 between span(A) and span(B)."""
  return jnp.sqrt(squared_distance(A, B))


def random_point(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
  """Haar-uniform orthonormal [..., d, k]: qf of a standard normal matrix. Usable
  as a Flax initializer."""
  return orthonormalize(jax.random.normal(key, shape, dtype))

