"""The Poincaré ball of curvature -c: gyrovector operations, exponential and
logarithmic maps, transport, distance, midpoints and the Fréchet mean.

Formulas: Ganea et al., "Hyperbolic Neural Networks" (NeurIPS 2018), Sec. 2;
Ungar, "A Gyrovector Space Approach to Hyperbolic Geometry" (2008) for the
gyration; Shimizu et al., "Hyperbolic Neural Networks++" (ICLR 2021), Eq. 3
for the midpoint; Lou et al., "Differentiating through the Fréchet Mean"
(ICML 2020) for the implicit backward of the mean.

`PoincareBall(custom_grads=True)` routes the core maps through the hand-written
VJPs of `poincare_core`; `custom_grads=False` differentiates the same forward
with plain autodiff (Poincaré ResNet's comparison). Composite operations
(expmap, logmap, transport, ...) are built from the core maps, so their
gradients use the custom rules through the chain rule. Points and tangent
vectors are [..., d]; c is a positive scalar (float or array; learnable c is
just a traced array).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp

from vision_jax.geometry import poincare_core as core


@dataclasses.dataclass(frozen=True)
class PoincareBall:
  """Operations on D_c = {x : c||x||^2 < 1}; every method takes c last."""
  custom_grads: bool = True

  def _core(self, name: str):
    return (core.CUSTOM if self.custom_grads else core.PLAIN)[name]

  @staticmethod
  def _c(c, x: jax.Array) -> jax.Array:
    return jnp.asarray(c, x.dtype)

  # Core maps (custom VJPs).
  def mobius_add(self, x, y, c):
    """x ⊕_c y (Ganea et al., Eq. 1)."""
    return self._core("mobius_add")(x, y, self._c(c, x))

  def project(self, x, c):
    """Onto the closed ball of radius (1 - eps)/sqrt(c) (eps: core.PROJECT_EPS)."""
    return self._core("project")(x, self._c(c, x))

  def conformal_factor(self, x, c):
    """lambda_x = 2 / (1 - c||x||^2), shape [..., 1]."""
    return self._core("conformal_factor")(x, self._c(c, x))

  def expmap0(self, v, c):
    """exp_0(v) = tanh(sqrt(c)||v||) v / (sqrt(c)||v||), projected."""
    return self._core("expmap0")(v, self._c(c, v))

  def expmap0_scale(self, n, c):
    """The scalar a with exp_0(v) = a v (projection included) for ||v|| = n [..., 1]:
    lets a layer apply exp_0 to vectors it never forms (patches of a conv)."""
    c = self._c(c, n)
    f = self._core("expmap0_factor")(n, c)
    max_norm = (1 - core._by_dtype(core.PROJECT_EPS, n.dtype)) / jnp.sqrt(c)
    return jnp.where(f * n > max_norm, max_norm / n, f)

  def logmap0(self, y, c):
    """log_0(y) = atanh(sqrt(c)||y||) y / (sqrt(c)||y||)."""
    return self._core("logmap0")(y, self._c(c, y))

  # Composites.
  def expmap(self, x, v, c):
    """exp_x(v) = x ⊕ tanh(sqrt(c) lambda_x ||v|| / 2) v / (sqrt(c)||v||)
    = x ⊕ exp_0(lambda_x v / 2) (Ganea et al., Lemma 2), projected."""
    return self._core("expmap")(x, v, self._c(c, x))

  def logmap(self, x, y, c):
    """log_x(y) = 2 / (sqrt(c) lambda_x) atanh(sqrt(c)||z||) z / ||z||, z = (-x) ⊕ y
    = (2 / lambda_x) log_0(z)."""
    return self._core("logmap")(x, y, self._c(c, x))

  def mobius_scalar_mul(self, r, x, c):
    """r ⊗ x = tanh(r atanh(sqrt(c)||x||)) x / (sqrt(c)||x||) = exp_0(r log_0(x));
    r broadcasts against x[..., :1]."""
    return self.expmap0(r * self.logmap0(x, c), c)

  def half(self, y, c):
    """(1/2) ⊗ y = y / (1 + sqrt(1 - c||y||^2)) in closed form."""
    c = self._c(c, y)
    return y / (1 + jnp.sqrt(jnp.maximum(1 - c * core.sq_norm(y), 0.0)))

  def gyration(self, u, v, w, c):
    """gyr[u, v] w = ⊖(u ⊕ v) ⊕ (u ⊕ (v ⊕ w)) in closed form (Ungar 2008
    specialised to the ball): w + 2 (a u + b v) / d."""
    c = self._c(c, u)
    u2, v2 = core.sq_norm(u), core.sq_norm(v)
    uv, uw, vw = core.dot(u, v), core.dot(u, w), core.dot(v, w)
    a = -c**2 * uw * v2 + c * vw + 2 * c**2 * uv * vw
    b = -c**2 * vw * u2 - c * uw
    d = 1 + 2 * c * uv + c**2 * u2 * v2
    return w + 2 * (a * u + b * v) / jnp.maximum(d, core.MIN_DENOM)

  def transp(self, x, y, v, c):
    """Parallel transport of v from T_x to T_y: gyr[y, -x] v lambda_x / lambda_y."""
    c = self._c(c, x)
    return (self.gyration(y, -x, v, c) * self.conformal_factor(x, c)
            / self.conformal_factor(y, c))

  def dist(self, x, y, c, keepdims: bool = False):
    """d_c(x, y) = (2 / sqrt(c)) atanh(sqrt(c)||(-x) ⊕ y||) = 2||log_0((-x) ⊕ y)||."""
    c = self._c(c, x)
    d = 2 * core.safe_norm(self.logmap0(self.mobius_add(-x, y, c), c))
    return d if keepdims else d[..., 0]

  def midpoint(self, x, c, weights=None, axis: int = 0):
    """Weighted gyro-midpoint over `axis` (Shimizu et al., Eq. 3):
    (1/2) ⊗ (sum_i w_i lambda_i x_i / sum_i w_i (lambda_i - 1))."""
    c = self._c(c, x)
    axis = axis % x.ndim
    lam = self.conformal_factor(x, c)
    w = 1.0 if weights is None else jnp.expand_dims(weights, -1)
    num = jnp.sum(w * lam * x, axis=axis)
    den = jnp.sum(w * (lam - 1), axis=axis)
    return self.half(num / den, c)

  def frechet_variance(self, x, mean, c, axis: int = 0):
    """mean_i d_c(x_i, mean)^2 over `axis` (mean broadcast along it)."""
    return jnp.mean(self.dist(x, jnp.expand_dims(mean, axis), c) ** 2, axis=axis)

  def frechet_mean(self, x, c, weights=None, max_iters: int = 100, tol: float | None = None):
    """argmin_m sum_i w_i d_c(m, x_i)^2 of points x [N, d] (vmap for batches).

    Forward: Karcher flow m <- exp_m(sum_i w_i log_m(x_i)) from the midpoint,
    until the step norm is below `tol` (default ~100 eps) or `max_iters`.
    Backward: implicit (Lou et al., Thm. 4.1): at the mean, F(m; x, w, c) =
    sum_i w_i log_m(x_i) = 0, so the cotangent g of m becomes -(dF/dx, dF/dw,
    dF/dc)^T J^-T g with J = dF/dm (d x d). The iterations are not differentiated:
    memory does not grow with them.
    """
    c = self._c(c, x)
    w = jnp.ones(x.shape[:1], x.dtype) if weights is None else jnp.asarray(weights, x.dtype)
    tol = 100 * jnp.finfo(x.dtype).eps if tol is None else tol
    return _frechet_mean(self, max_iters, tol, x, w, c)

  def karcher_residual(self, m, x, w, c):
    """F(m) = sum_i w_i log_m(x_i) / sum_i w_i: zero at the Fréchet mean."""
    return jnp.sum(w[:, None] * self.logmap(m, x, c), axis=0) / jnp.sum(w)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _frechet_mean(ball: PoincareBall, max_iters: int, tol: float, x, w, c):
  def keep_going(state):
    _, step, i = state
    return (i < max_iters) & (step > tol)

  def update(state):
    m, _, i = state
    v = ball.karcher_residual(m, x, w, c)
    return ball.expmap(m, v, c), jnp.linalg.norm(v), i + 1

  start = ball.midpoint(x, c, w)
  return jax.lax.while_loop(keep_going, update, (start, jnp.asarray(jnp.inf, x.dtype), 0))[0]


def _frechet_mean_fwd(ball, max_iters, tol, x, w, c):
  m = _frechet_mean(ball, max_iters, tol, x, w, c)
  return m, (m, x, w, c)


def _frechet_mean_bwd(ball, max_iters, tol, res, g):
  m, x, w, c = res
  jac = jax.jacrev(ball.karcher_residual)(m, x, w, c)
  adjoint = jnp.linalg.solve(jac.T, g)
  _, vjp = jax.vjp(lambda x, w, c: ball.karcher_residual(m, x, w, c), x, w, c)
  return tuple(-t for t in vjp(adjoint))


_frechet_mean.defvjp(_frechet_mean_fwd, _frechet_mean_bwd)
