"""Poincaré-ball layers of Poincaré ResNet (van Spengler, Berkhout & Mettes,
ICCV 2023, Sec. 3): fully connected, convolution, midpoint batch norm and the
residual connection. Inputs and outputs are tangent vectors at the origin
(Euclidean tensors, channels last): each layer maps them onto the ball with
exp_0, works there, and maps back with log_0, as the paper's networks do.

Fully connected (Shimizu et al., "Hyperbolic Neural Networks++", ICLR 2021,
Eqs. 6 and 9): for hyperplanes (z_k, r_k),
  v_k(x) = (2||z_k|| / sqrt(c)) asinh(sqrt(c) lambda_x <x, z_k> / ||z_k|| cosh(2 sqrt(c) r_k)
                                    - (lambda_x - 1) sinh(2 sqrt(c) r_k)),
  w = sinh(sqrt(c) v) / sqrt(c),   y = w / (1 + sqrt(1 + c||w||^2)),
with the conformal factor lambda_x = 2 / (1 - c||x||^2). (The official
Poincaré ResNet code multiplies, lambda = 2 (1 - c||x||^2), where the formula
divides; with the correct factor the identity initialisation z = I/2, r = 0
returns its input exactly.)
"""
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from scipy import special

from vision_jax.geometry import poincare_core as core
from vision_jax.geometry.poincare import PoincareBall


class Curvature(nn.Module):
  """c > 0, fixed or learned as softplus(param) (initialised to give `value`)."""
  value: float = 0.1
  learnable: bool = False

  @nn.compact
  def __call__(self) -> jax.Array:
    if not self.learnable:
      return jnp.asarray(self.value, jnp.float32)
    inverse_softplus = math.log(math.expm1(self.value))
    raw = self.param("c_raw", nn.initializers.constant(inverse_softplus), ())
    return jax.nn.softplus(raw)


def hnnpp_fc(xz: jax.Array, lam: jax.Array, z: jax.Array, r: jax.Array | None, c: jax.Array,
             ball: PoincareBall) -> jax.Array:
  """HNN++ FC from <x, z_k> [..., m] and lambda_x [..., 1] -> ball points [..., m]."""
  sqrt_c = jnp.sqrt(c)
  z_norm = core.safe_norm(z.T)[:, 0]  # Zero columns (identity init, m > n) stay finite.
  arg = sqrt_c * lam * xz / z_norm
  if r is not None:
    two_r = 2 * sqrt_c * r
    arg = arg * jnp.cosh(two_r) - (lam - 1) * jnp.sinh(two_r)
  v = 2 * z_norm / sqrt_c * jnp.arcsinh(arg)
  w = jnp.sinh(sqrt_c * v) / sqrt_c
  return ball.project(w / (1 + jnp.sqrt(1 + c * core.sq_norm(w))), c)


def _conformal(x2: jax.Array, c: jax.Array) -> jax.Array:
  return 2 / jnp.maximum(1 - c * x2, core.MIN_DENOM)


def fully_connected(ball: PoincareBall, x: jax.Array, z: jax.Array, r: jax.Array | None,
                    c: jax.Array) -> jax.Array:
  """HNN++ Poincaré FC of ball points x [..., n] with z [n, m], r [m] -> [..., m] on the ball."""
  return hnnpp_fc(x @ z, _conformal(core.sq_norm(x), c), z, r, c, ball)


def tangent_fully_connected(ball: PoincareBall, vz: jax.Array, v_sq: jax.Array, z: jax.Array,
                            r: jax.Array | None, c: jax.Array) -> jax.Array:
  """`fully_connected` of x = exp_0(v) given only v @ z and ||v||^2: exp_0(v) = a v
  with a scalar a per vector, so <x, z_k> = a <v, z_k> and ||x||^2 = a^2 ||v||^2."""
  n = jnp.sqrt(jnp.maximum(v_sq, core.MIN_NORM**2))
  a = ball.expmap0_scale(n, c)
  return hnnpp_fc(a * vz, _conformal((a * n) ** 2, c), z, r, c, ball)


def _identity_or_normal(std: float | None):
  """z = I/2 (the identity map, Poincaré ResNet's init) or Normal(0, std)."""
  def init(key, shape, dtype=jnp.float32):
    if std is None:
      return 0.5 * jnp.eye(*shape, dtype=dtype)
    return std * jax.random.normal(key, shape, dtype)
  return init


def _fc_params(module: nn.Module, n_in: int, features: int, identity_init: bool,
               use_bias: bool) -> tuple[jax.Array, jax.Array | None]:
  """z [n_in, features]: I/2 (identity) or Normal(0, (2 n m)^-1/2) as the official code; bias 0."""
  std = None if identity_init else (2 * n_in * features) ** -0.5
  z = module.param("z", _identity_or_normal(std), (n_in, features))
  r = module.param("bias", nn.initializers.zeros, (features,)) if use_bias else None
  return z, r


class _PoincareFC(nn.Module):
  """Fields and parameters shared by the FC and the conv (which is an FC on patches)."""
  features: int
  use_bias: bool = True
  identity_init: bool = True  # Else z ~ Normal(0, (2 n m)^-1/2).
  c: float = 0.1
  learnable_c: bool = False
  custom_grads: bool = True

  def _setup_fc(self, n_in: int, dtype) -> tuple:
    """(ball, c, z, r) for an FC from n_in inputs; call inside a compact method."""
    c = Curvature(self.c, self.learnable_c, name="curvature")().astype(dtype)
    z, r = _fc_params(self, n_in, self.features, self.identity_init, self.use_bias)
    return PoincareBall(self.custom_grads), c, z, r


class PoincareLinear(_PoincareFC):
  """exp_0 -> HNN++ FC -> log_0 on the last axis."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ball, c, z, r = self._setup_fc(x.shape[-1], x.dtype)
    return ball.logmap0(tangent_fully_connected(ball, x @ z, core.sq_norm(x), z, r, c), c)


def beta_concat_scale(in_features: int, kernel_elements: int) -> float:
  """B(n/2, 1/2) / B(n_i/2, 1/2), n = n_i K: the factor that keeps the expected norm
  when K vectors of n_i dims are concatenated (HNN++ Sec. 3.3, beta-concatenation)."""
  n = in_features * kernel_elements
  return float(special.beta(n / 2, 0.5) / special.beta(in_features / 2, 0.5))


def patches(x: jax.Array, kernel_size: Sequence[int], strides: int, padding: int) -> jax.Array:
  """[B, H, W, C] -> [B, H', W', C * kh * kw] zero-padded sliding windows, features
  ordered channel-major (c, i, j) as PyTorch's `unfold`."""
  return jax.lax.conv_general_dilated_patches(
      x, tuple(kernel_size), (strides, strides), [(padding, padding)] * 2,
      dimension_numbers=("NHWC", "OIHW", "NHWC"))


class PoincareConv2d(_PoincareFC):
  """Poincaré conv: beta-scaled patches (channel-major, as torch `unfold`) -> exp_0 ->
  FC -> log_0, computed without forming the patches: since exp_0 scales each patch
  vector v by a scalar, the FC needs only v @ z, a plain convolution with z as its
  kernel, and ||v||^2, a window sum of the pixels' squared norms."""
  kernel_size: Sequence[int] = (3, 3)
  strides: int = 1
  padding: int = 1

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    (kh, kw), cin, s, p = self.kernel_size, x.shape[-1], self.strides, self.padding
    ball, c, z, r = self._setup_fc(cin * kh * kw, x.dtype)
    x = x * beta_concat_scale(cin, kh * kw)
    kernel = z.reshape(cin, kh, kw, self.features).transpose(1, 2, 0, 3).astype(x.dtype)
    vz = jax.lax.conv_general_dilated(x, kernel, (s, s), [(p, p)] * 2,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
    v_sq = jax.lax.reduce_window(core.sq_norm(x), 0.0, jax.lax.add, (1, kh, kw, 1),
                                 (1, s, s, 1), ((0, 0), (p, p), (p, p), (0, 0)))
    return ball.logmap0(tangent_fully_connected(ball, vz, v_sq, z, r, c), c)


class PoincareBatchNorm(nn.Module):
  """Riemannian batch norm with the gyro-midpoint (Lou et al., ICML 2020, Alg. 2;
  Poincaré ResNet Sec. 3.3) over all axes but the last.

  Training: m = midpoint of the batch, s^2 = mean d(x_i, m)^2; evaluation: the
  running statistics (the official code has none and normalises with the test
  batch). Output: exp_b(sqrt(var / (s^2 + eps)) P_{m->b}(log_m x)), b = exp_0(mean),
  with learned `mean` (zeros) and scalar `var` (1).
  """
  momentum: float = 0.9  # Running stats: r <- momentum r + (1 - momentum) batch.
  epsilon: float = 1e-6
  use_running_average: bool | None = None
  c: float = 0.1
  learnable_c: bool = False
  custom_grads: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, use_running_average: bool | None = None) -> jax.Array:
    use_running = nn.merge_param("use_running_average", self.use_running_average,
                                 use_running_average)
    ball, features = PoincareBall(self.custom_grads), x.shape[-1]
    c = Curvature(self.c, self.learnable_c, name="curvature")().astype(x.dtype)
    mean = self.param("mean", nn.initializers.zeros, (features,))
    var = self.param("var", nn.initializers.ones, ())
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,), x.dtype)
    ra_var = self.variable("batch_stats", "var", jnp.ones, (), x.dtype)
    points = ball.expmap0(x.reshape(-1, features), c)
    if use_running:
      m, s2 = ra_mean.value, ra_var.value
    else:
      m = ball.midpoint(points, c)
      s2 = ball.frechet_variance(points, m, c)
      if not self.is_initializing():
        # Geodesic interpolation toward the batch mean, linear for the variance.
        step = (1 - self.momentum) * ball.logmap(ra_mean.value, jax.lax.stop_gradient(m), c)
        ra_mean.value = ball.expmap(ra_mean.value, step, c)
        ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * jax.lax.stop_gradient(s2)
    b = ball.expmap0(mean, c)
    v = ball.transp(m, b, ball.logmap(m, points, c), c)
    out = ball.expmap(b, jnp.sqrt(var / (s2 + self.epsilon)) * v, c)
    return ball.logmap0(out, c).reshape(x.shape)


def poincare_residual(ball: PoincareBall, fx: jax.Array, residual: jax.Array,
                      c: jax.Array) -> jax.Array:
  """log_0(exp_0(f(x)) ⊕ exp_0(r)): Poincaré ResNet's skip connection ('fr' order)."""
  return ball.logmap0(ball.mobius_add(ball.expmap0(fx, c), ball.expmap0(residual, c), c), c)

