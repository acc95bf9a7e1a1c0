"""Core maps of the Poincaré ball with hand-written backward passes.

The ball of curvature -c (c > 0) is D_c = {x : c||x||^2 < 1} (Ganea et al.,
"Hyperbolic Neural Networks", NeurIPS 2018, Sec. 2). Poincaré ResNet (van
Spengler, Berkhout & Mettes, ICCV 2023, Sec. 4 and App. B) derives the
backward passes of these maps by hand so that deep hyperbolic networks keep the
time and memory of their Euclidean twins; here they are `jax.custom_vjp`s:

  mobius_add(x, y, c)    x ⊕_c y (Eq. 1 of Ganea et al.)
  project(x, c)          clip to the radius (1 - eps) / sqrt(c)
  expmap0_raw(v, c)      tanh(sqrt(c)||v||) v / (sqrt(c)||v||)   (no projection)
  logmap0(y, c)          atanh(sqrt(c)||y||) y / (sqrt(c)||y||)
  conformal_factor(x, c) lambda_x = 2 / (1 - c||x||^2)
  expmap0(v, c), expmap(x, v, c), logmap(x, y, c)
                         exp_x and log_x, whose backward chains the rules above
                         after recomputing the pieces (only x, v / y, c are saved)
  expmap0_factor(n, c), logmap0_factor(n, c)
                         the radial maps' scalar factors F(sqrt(c) n) for a norm n,
                         for layers that never form exp_0(v) itself

Each backward saves only the op's inputs and recomputes the cheap scalars
(norms, dot products), and also differentiates with respect to c. The two
radial maps share one rule: for out = F(u) v with u = sqrt(c)||v||,
  dL/dv = F(u) g + c H(u) <g, v> v,   dL/dc = H(u) <g, v> ||v||^2 / 2,
where H(u) = F'(u) / u is finite at u = 0 (Taylor series near 0, where the
closed form cancels catastrophically).

`PLAIN[name]` is the same forward for plain autodiff, the twin the custom
rules are tested and benchmarked against. Inputs are [..., d] on the last
axis; c is a scalar array (or broadcasts against x[..., :1]).

Clamps (documented constants): denominators >= MIN_DENOM; norms >= MIN_NORM
(so a zero vector has finite, zero-direction gradients); project keeps
c||x||^2 <= (1 - PROJECT_EPS)^2 (Poincaré ResNet's eps: 4e-3 in float32, 1e-5 in
float64); logmap0 clips sqrt(c)||y|| to ATANH_MAX < 1.
"""
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

MIN_DENOM = 1e-15
MIN_NORM = 1e-15
PROJECT_EPS = {np.dtype(np.float32): 4e-3, np.dtype(np.float64): 1e-5}
ATANH_MAX = {np.dtype(np.float32): 1 - 1e-7, np.dtype(np.float64): 1 - 1e-15}
# Below this u the radial factors use their Taylor series (through u^8): the
# closed form of H loses ~eps/u^2 of its digits, the series ~u^10.
SERIES_BELOW = {np.dtype(np.float32): 0.25, np.dtype(np.float64): 0.05}


def _by_dtype(table: dict, dtype) -> float:
  return table.get(np.dtype(dtype), table[np.dtype(np.float32)])


def sq_norm(x: jax.Array) -> jax.Array:
  return jnp.sum(x * x, axis=-1, keepdims=True)


def dot(x: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.sum(x * y, axis=-1, keepdims=True)


def safe_norm(x: jax.Array) -> jax.Array:
  """||x|| on the last axis (kept), >= MIN_NORM, with zero gradient at x = 0."""
  return jnp.sqrt(jnp.maximum(sq_norm(x), MIN_NORM**2))


def sum_to(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Sums a broadcast gradient back to an input's shape."""
  g = jnp.sum(g, axis=tuple(range(g.ndim - len(shape)))) if g.ndim > len(shape) else g
  axes = tuple(i for i, s in enumerate(shape) if s == 1 and g.shape[i] != 1)
  return jnp.sum(g, axis=axes, keepdims=True) if axes else g.reshape(shape)


def _series(u2: jax.Array, coefficients: tuple[float, ...]) -> jax.Array:
  out = jnp.zeros_like(u2)
  for a in reversed(coefficients):
    out = out * u2 + a
  return out


# --- Möbius addition --------------------------------------------------------

def _mobius_terms(x, y, c):
  x2, y2, xy = sq_norm(x), sq_norm(y), dot(x, y)
  a = 1 + 2 * c * xy + c * y2
  b = 1 - c * x2
  d_raw = 1 + 2 * c * xy + c**2 * x2 * y2
  return x2, y2, xy, a, b, d_raw


def mobius_add_plain(x: jax.Array, y: jax.Array, c: jax.Array) -> jax.Array:
  """x ⊕_c y = ((1 + 2c<x,y> + c||y||^2) x + (1 - c||x||^2) y) / (1 + 2c<x,y> + c^2||x||^2||y||^2)."""
  _, _, _, a, b, d_raw = _mobius_terms(x, y, c)
  return (a * x + b * y) / jnp.maximum(d_raw, MIN_DENOM)


def _mobius_add_bwd(res, g):
  """Every [..., d] term is g, x or y times a per-vector scalar, so the backward is
  five reductions and two fused elementwise passes (no [..., d] temporaries)."""
  x, y, c = res
  x2, y2, xy, a, b, d_raw = _mobius_terms(x, y, c)
  d = jnp.maximum(d_raw, MIN_DENOM)
  gnx, gny = dot(g, x) / d, dot(g, y) / d  # <dL/d(numerator), x>, <., y>
  gd = jnp.where(d_raw > MIN_DENOM, -(a * gnx + b * gny) / d, 0.0)  # dL/d(denominator)
  gx = (a / d) * g + (2 * c * (gnx + gd)) * y + (2 * c * (c * y2 * gd - gny)) * x
  gy = (b / d) * g + (2 * c * (gnx + gd)) * x + (2 * c * (gnx + c * x2 * gd)) * y
  gc = gnx * (2 * xy + y2) - gny * x2 + gd * (2 * xy + 2 * c * x2 * y2)
  return sum_to(gx, x.shape), sum_to(gy, y.shape), sum_to(gc, c.shape)


mobius_add = jax.custom_vjp(mobius_add_plain)
mobius_add.defvjp(lambda x, y, c: (mobius_add_plain(x, y, c), (x, y, c)), _mobius_add_bwd)


# --- Projection onto the ball -----------------------------------------------

def _max_norm(x, c):
  return (1 - _by_dtype(PROJECT_EPS, x.dtype)) / jnp.sqrt(c)


def project_plain(x: jax.Array, c: jax.Array) -> jax.Array:
  """x scaled onto radius (1 - eps)/sqrt(c) where it lies beyond it."""
  norm, max_norm = safe_norm(x), _max_norm(x, c)
  return jnp.where(norm > max_norm, x / norm * max_norm, x)


def _project_bwd(res, g):
  x, c = res
  norm, max_norm = safe_norm(x), _max_norm(x, c)
  clipped = norm > max_norm
  scale, g_unit = max_norm / norm, dot(g, x) / norm
  gx = jnp.where(clipped, scale * g - (scale * g_unit / norm) * x, g)
  gc = jnp.where(clipped, -g_unit * max_norm / (2 * c), 0.0)
  return sum_to(gx, x.shape), sum_to(gc, c.shape)


project = jax.custom_vjp(project_plain)
project.defvjp(lambda x, c: (project_plain(x, c), (x, c)), _project_bwd)


# --- Radial maps: expmap0 (before projection) and logmap0 --------------------

def _radial(closed_f: Callable, closed_h: Callable, series_f: tuple, series_h: tuple,
            clip_table: dict | None):
  """Plain and custom versions of the vector map out = F(sqrt(c)||v||) v and of
  its scalar factor F(sqrt(c) n) for a given norm n; H(u) = F'(u)/u."""

  def scalars(n, c):
    u = jnp.sqrt(c) * n
    clipped = jnp.zeros(u.shape, bool)
    if clip_table is not None:
      u_max = _by_dtype(clip_table, n.dtype)
      clipped = u > u_max
      u = jnp.minimum(u, u_max)
    small = u < _by_dtype(SERIES_BELOW, n.dtype)
    u_big = jnp.where(small, 1.0, u)  # Keeps the unused branch finite.
    f = jnp.where(small, _series(u * u, series_f), closed_f(u_big))
    h = jnp.where(small, _series(u * u, series_h), closed_h(u_big))
    return f, jnp.where(clipped, 0.0, h)  # Clipped: F is constant in n and c.

  def plain(v, c):
    return factor_plain(safe_norm(v), c) * v

  def bwd(res, g):
    v, c = res
    n = safe_norm(v)
    f, h = scalars(n, c)
    gv_dot = dot(g, v)
    return sum_to(f * g + c * h * gv_dot * v, v.shape), sum_to(h * gv_dot * n * n / 2, c.shape)

  def factor_plain(n, c):
    u = jnp.sqrt(c) * n
    if clip_table is not None:
      u = jnp.minimum(u, _by_dtype(clip_table, n.dtype))
    small = u < _by_dtype(SERIES_BELOW, n.dtype)
    return jnp.where(small, _series(u * u, series_f), closed_f(jnp.where(small, 1.0, u)))

  def factor_bwd(res, g):  # dF/dn = H c n, dF/dc = H n^2 / 2.
    n, c = res
    _, h = scalars(n, c)
    return sum_to(g * h * c * n, n.shape), sum_to(g * h * n * n / 2, c.shape)

  custom = jax.custom_vjp(plain)
  custom.defvjp(lambda v, c: (plain(v, c), (v, c)), bwd)
  factor = jax.custom_vjp(factor_plain)
  factor.defvjp(lambda n, c: (factor_plain(n, c), (n, c)), factor_bwd)
  return plain, custom, factor_plain, factor, bwd


(expmap0_raw_plain, expmap0_raw, expmap0_factor_plain, expmap0_factor,
 _expmap0_raw_bwd) = _radial(
    closed_f=lambda u: jnp.tanh(u) / u,
    closed_h=lambda u: (u / jnp.cosh(u)**2 - jnp.tanh(u)) / u**3,
    series_f=(1., -1 / 3, 2 / 15, -17 / 315, 62 / 2835),
    series_h=(-2 / 3, 8 / 15, -34 / 105, 496 / 2835, -2764 / 31185),
    clip_table=None)
logmap0_plain, logmap0, logmap0_factor_plain, logmap0_factor, _logmap0_bwd = _radial(
    closed_f=lambda u: jnp.arctanh(u) / u,
    closed_h=lambda u: (u / (1 - u * u) - jnp.arctanh(u)) / u**3,
    series_f=(1., 1 / 3, 1 / 5, 1 / 7, 1 / 9),
    series_h=(2 / 3, 4 / 5, 6 / 7, 8 / 9, 10 / 11),
    clip_table=ATANH_MAX)
expmap0_raw.__doc__ = "tanh(sqrt(c)||v||) v / (sqrt(c)||v||), before projection."
logmap0.__doc__ = "atanh(sqrt(c)||y||) y / (sqrt(c)||y||), the inverse of expmap0."


# --- Conformal factor ---------------------------------------------------------

def conformal_factor_plain(x: jax.Array, c: jax.Array) -> jax.Array:
  """lambda_x^c = 2 / (1 - c||x||^2), kept as [..., 1]."""
  return 2 / jnp.maximum(1 - c * sq_norm(x), MIN_DENOM)


def _conformal_factor_bwd(res, g):
  x, c = res
  x2 = sq_norm(x)
  ok = 1 - c * x2 > MIN_DENOM
  lam = 2 / jnp.maximum(1 - c * x2, MIN_DENOM)
  scale = jnp.where(ok, g * lam * lam, 0.0)
  return sum_to(scale * c * x, x.shape), sum_to(scale * x2 / 2, c.shape)


conformal_factor = jax.custom_vjp(conformal_factor_plain)
conformal_factor.defvjp(lambda x, c: (conformal_factor_plain(x, c), (x, c)),
                        _conformal_factor_bwd)

# --- exp_0, exp_x and log_x: one backward each, saving only the inputs ----------

def expmap0_plain(v: jax.Array, c: jax.Array) -> jax.Array:
  """exp_0(v) = project(tanh(sqrt(c)||v||) v / (sqrt(c)||v||))."""
  return project_plain(expmap0_raw_plain(v, c), c)


def _expmap0_bwd(res, g):
  v, c = res
  gs, gc1 = _project_bwd((expmap0_raw_plain(v, c), c), g)
  gv, gc2 = _expmap0_raw_bwd((v, c), gs)
  return gv, gc1 + gc2


expmap0 = jax.custom_vjp(expmap0_plain)
expmap0.defvjp(lambda v, c: (expmap0_plain(v, c), (v, c)), _expmap0_bwd)


def expmap_plain(x: jax.Array, v: jax.Array, c: jax.Array) -> jax.Array:
  """exp_x(v) = project(x ⊕ exp_0(lambda_x v / 2)) (Ganea et al., Lemma 2)."""
  w = conformal_factor_plain(x, c) / 2 * v
  return project_plain(mobius_add_plain(x, expmap0_raw_plain(w, c), c), c)


def _expmap_bwd(res, g):
  x, v, c = res  # Recompute the forward's pieces, then run their backward rules in reverse.
  half_lam = conformal_factor_plain(x, c) / 2
  w = half_lam * v
  s = expmap0_raw_plain(w, c)
  t = mobius_add_plain(x, s, c)
  gt, gc1 = _project_bwd((t, c), g)
  gx1, gs, gc2 = _mobius_add_bwd((x, s, c), gt)
  gw, gc3 = _expmap0_raw_bwd((w, c), gs)
  gx2, gc4 = _conformal_factor_bwd((x, c), dot(gw, v) / 2)
  return (sum_to(gx1 + gx2, x.shape), sum_to(half_lam * gw, v.shape),
          sum_to(gc1 + gc2 + gc3 + gc4, c.shape))


expmap = jax.custom_vjp(expmap_plain)
expmap.defvjp(lambda x, v, c: (expmap_plain(x, v, c), (x, v, c)), _expmap_bwd)


def logmap_plain(x: jax.Array, y: jax.Array, c: jax.Array) -> jax.Array:
  """log_x(y) = (2 / lambda_x) log_0((-x) ⊕ y)."""
  return 2 / conformal_factor_plain(x, c) * logmap0_plain(mobius_add_plain(-x, y, c), c)


def _logmap_bwd(res, g):
  x, y, c = res
  lam = conformal_factor_plain(x, c)
  z = mobius_add_plain(-x, y, c)
  gl = 2 / lam * g
  g_lam = -dot(gl, logmap0_plain(z, c)) / lam
  gz, gc1 = _logmap0_bwd((z, c), gl)
  gmx, gy, gc2 = _mobius_add_bwd((-x, y, c), gz)
  gx, gc3 = _conformal_factor_bwd((x, c), g_lam)
  return sum_to(gx - gmx, x.shape), sum_to(gy, y.shape), sum_to(gc1 + gc2 + gc3, c.shape)


logmap = jax.custom_vjp(logmap_plain)
logmap.defvjp(lambda x, y, c: (logmap_plain(x, y, c), (x, y, c)), _logmap_bwd)

CUSTOM = {"expmap0": expmap0, "expmap": expmap, "logmap": logmap, "mobius_add": mobius_add, "project": project, "expmap0_raw": expmap0_raw,
          "logmap0": logmap0, "conformal_factor": conformal_factor,
          "expmap0_factor": expmap0_factor, "logmap0_factor": logmap0_factor}
PLAIN = {"expmap0": expmap0_plain, "expmap": expmap_plain, "logmap": logmap_plain, "mobius_add": mobius_add_plain, "project": project_plain,
         "expmap0_raw": expmap0_raw_plain, "logmap0": logmap0_plain,
         "conformal_factor": conformal_factor_plain, "expmap0_factor": expmap0_factor_plain,
         "logmap0_factor": logmap0_factor_plain}
