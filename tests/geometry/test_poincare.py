"""Poincaré-ball geometry: reference values, identities, geoopt, custom VJPs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P
from jax.test_util import check_grads

from vision_jax.geometry import poincare_core as core
from vision_jax.geometry.poincare import PoincareBall

BALL, PLAIN = PoincareBall(custom_grads=True), PoincareBall(custom_grads=False)
X, Y = np.array([0.1, 0.2]), np.array([0.3, -0.1])


@pytest.fixture(autouse=True)
def float64():
  with jax.enable_x64(True):
    yield


def points(seed, n, d, c, radius=0.8):
  """n random points of the ball, norms uniform in [0, radius / sqrt(c))."""
  rng = np.random.default_rng(seed)
  v = rng.standard_normal((n, d))
  v /= np.linalg.norm(v, axis=-1, keepdims=True)
  return v * rng.uniform(0, radius, (n, 1)) / np.sqrt(c)


# Values of the reference file (manifolds.md), computed from the formulas in float64.
@pytest.mark.parametrize("name, value", [
    ("mobius_add", (0.387317073171, 0.125853658537)),
    ("dist", 0.761342108342),
    ("expmap0_y", (0.290384440054, -0.096794813351)),
    ("logmap0_x", (0.101718524792, 0.203437049584)),
    ("logmap", (0.178878001873, -0.314299766003)),
    ("expmap", (0.391755536759, 0.125035413272)),
    ("midpoint", (0.196057833083, 0.044439775499)),
])
def test_reference_values_c1(name, value):
  x, y = jnp.asarray(X), jnp.asarray(Y)
  got = {"mobius_add": lambda: BALL.mobius_add(x, y, 1.0), "dist": lambda: BALL.dist(x, y, 1.0),
         "expmap0_y": lambda: BALL.expmap0(y, 1.0), "logmap0_x": lambda: BALL.logmap0(x, 1.0),
         "logmap": lambda: BALL.logmap(x, y, 1.0), "expmap": lambda: BALL.expmap(x, y, 1.0),
         "midpoint": lambda: BALL.midpoint(jnp.stack([x, y]), 1.0)}[name]()
  np.testing.assert_allclose(got, value, atol=1e-11)


def test_reference_values_c01():
  x, y = jnp.asarray(X), jnp.asarray(Y)
  np.testing.assert_allclose(BALL.mobius_add(x, y, 0.1), (0.398882291303, 0.102689486553),
                             atol=1e-11)
  np.testing.assert_allclose(BALL.dist(x, y, 0.1), 0.724973063996, atol=1e-11)


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_gyrogroup_identities(c):
  x, y, z = (jnp.asarray(points(s, 16, 5, c)) for s in (1, 2, 3))
  zero = jnp.zeros_like(x)
  close = lambda a, b: np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-10)
  close(BALL.mobius_add(x, zero, c), x)
  close(BALL.mobius_add(zero, x, c), x)
  close(BALL.mobius_add(-x, BALL.mobius_add(x, y, c), c), y)  # Left cancellation.
  definition = BALL.mobius_add(-BALL.mobius_add(x, y, c),
                               BALL.mobius_add(x, BALL.mobius_add(y, z, c), c), c)
  close(BALL.gyration(x, y, z, c), definition)
  # Distance is invariant under left gyro-translation.
  close(BALL.dist(BALL.mobius_add(z, x, c), BALL.mobius_add(z, y, c), c), BALL.dist(x, y, c))
  close(BALL.dist(x, y, c), BALL.dist(y, x, c))
  close(BALL.mobius_scalar_mul(2.0, x, c), BALL.mobius_add(x, x, c))
  close(BALL.mobius_scalar_mul(0.5, BALL.mobius_scalar_mul(3.0, x, c), c),
        BALL.mobius_scalar_mul(1.5, x, c))
  close(BALL.half(x, c), BALL.mobius_scalar_mul(0.5, x, c))


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_maps_invert_and_transport_is_an_isometry(c):
  x, y = (jnp.asarray(points(s, 16, 5, c, radius=0.7)) for s in (4, 5))
  u, v = (jnp.asarray(np.random.default_rng(s).standard_normal((16, 5)) * 0.3) for s in (6, 7))
  close = lambda a, b: np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-10)
  close(BALL.logmap(x, BALL.expmap(x, u, c), c), u)
  close(BALL.expmap(x, BALL.logmap(x, y, c), c), y)
  close(BALL.expmap0(BALL.logmap0(y, c), c), y)
  close(BALL.logmap0(BALL.expmap0(u, c), c), u)
  # ||log_x y||_x = d(x, y): the Riemannian norm is lambda_x times the Euclidean one.
  lam_x = BALL.conformal_factor(x, c)[..., 0]
  close(lam_x * np.linalg.norm(BALL.logmap(x, y, c), axis=-1), BALL.dist(x, y, c))
  # Transport keeps the metric <u, v>_x = lambda_x^2 <u, v>.
  pu, pv = BALL.transp(x, y, u, c), BALL.transp(x, y, v, c)
  lam_y = BALL.conformal_factor(y, c)[..., 0]
  close(lam_y**2 * np.sum(pu * pv, -1), lam_x**2 * np.sum(u * v, -1))
  close(BALL.transp(x, y, BALL.logmap(x, y, c), c), -BALL.logmap(y, x, c))


def test_midpoint_and_frechet_mean():
  c = 0.7
  x = jnp.asarray(points(8, 1, 4, c))[0]
  copies = jnp.stack([x] * 5)
  np.testing.assert_allclose(BALL.midpoint(copies, c), x, atol=1e-12)
  np.testing.assert_allclose(BALL.frechet_mean(copies, c), x, atol=1e-12)
  # Two points: the gyro-midpoint and the Fréchet mean are the geodesic midpoint.
  pair = jnp.stack([jnp.asarray(X), jnp.asarray(Y)])
  np.testing.assert_allclose(BALL.frechet_mean(pair, 1.0), (0.196057833083, 0.044439775499),
                             atol=1e-11)
  # Many points: the mean zeroes the Karcher residual and beats nearby points.
  cloud = jnp.asarray(points(9, 12, 3, c))
  w = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, 12))
  m = BALL.frechet_mean(cloud, c, w)
  assert np.abs(BALL.karcher_residual(m, cloud, w, c)).max() < 1e-12
  cost = lambda p: jnp.sum(w * BALL.dist(cloud, p, c) ** 2)
  for step in np.random.default_rng(1).standard_normal((5, 3)) * 1e-3:
    assert cost(m) < cost(m + step)


def _geoopt(c):
  import geoopt  # pylint: disable=import-outside-toplevel  # The test extra installs both.
  import torch  # pylint: disable=import-outside-toplevel
  return geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))  # Not float32's c.


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_ops_equal_geoopt(c):
  import torch  # pylint: disable=import-outside-toplevel  # Installed by the test extra.
  ref = _geoopt(c)
  x, y = points(10, 32, 6, c), points(11, 32, 6, c)
  u = np.random.default_rng(12).standard_normal((32, 6)) * 0.5
  r = np.random.default_rng(13).uniform(-2, 2, (32, 1))
  t = lambda a: torch.tensor(a, dtype=torch.float64)
  pairs = {
      "mobius_add": (BALL.mobius_add(x, y, c), ref.mobius_add(t(x), t(y))),
      "project": (BALL.project(x * 3, c), ref.projx(t(x * 3))),
      "expmap0": (BALL.expmap0(u, c), ref.expmap0(t(u))),
      "logmap0": (BALL.logmap0(y, c), ref.logmap0(t(y))),
      "expmap": (BALL.expmap(x, u, c), ref.expmap(t(x), t(u))),
      "logmap": (BALL.logmap(x, y, c), ref.logmap(t(x), t(y))),
      "dist": (BALL.dist(x, y, c), ref.dist(t(x), t(y))),
      "mobius_scalar_mul": (BALL.mobius_scalar_mul(r, x, c), ref.mobius_scalar_mul(t(r), t(x))),
      "transp": (BALL.transp(x, y, u, c), ref.transp(t(x), t(y), t(u))),
      "conformal_factor": (BALL.conformal_factor(x, c), ref.lambda_x(t(x), keepdim=True)),
      "midpoint": (BALL.midpoint(x, c), ref.weighted_midpoint(t(x), reducedim=[0])),
  }
  for name, (ours, theirs) in pairs.items():
    np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-9, atol=1e-10, err_msg=name)
  from geoopt.manifolds.stereographic import math as gmath
  np.testing.assert_allclose(BALL.gyration(x, y, u, c),
                             gmath.gyration(t(x), t(y), t(u), k=t(-c)).numpy(), atol=1e-10)


CORE_CASES = {  # name -> (inputs builder); inputs stay off the clamps.
    "mobius_add": lambda c: (points(20, 8, 5, c), points(21, 8, 5, c)),
    "project": lambda c: (points(22, 8, 5, c, radius=1.5),),
    "expmap0_raw": lambda c: (np.random.default_rng(23).standard_normal((8, 5)),),
    "expmap0": lambda c: (np.random.default_rng(23).standard_normal((8, 5)),),
    "logmap0": lambda c: (points(24, 8, 5, c, radius=0.9),),
    "conformal_factor": lambda c: (points(25, 8, 5, c),),
    "expmap": lambda c: (points(26, 8, 5, c, radius=0.7),
                         np.random.default_rng(27).standard_normal((8, 5)) * 0.4 / np.sqrt(c)),
    "logmap": lambda c: (points(28, 8, 5, c, radius=0.7), points(29, 8, 5, c, radius=0.7)),
    # Norms on both sides of the series threshold.
    "expmap0_factor": lambda c: (np.geomspace(1e-3, 3.0, 12)[:, None] / np.sqrt(c),),
    "logmap0_factor": lambda c: (np.geomspace(1e-3, 0.95, 12)[:, None] / np.sqrt(c),),
}


@pytest.mark.parametrize("name", sorted(CORE_CASES))
@pytest.mark.parametrize("c", [0.1, 1.7])
def test_custom_vjp_equals_autodiff_and_finite_differences(name, c):
  args = tuple(jnp.asarray(a) for a in CORE_CASES[name](c)) + (jnp.asarray(c),)
  if name == "project":  # Keep norms away from the clipping radius, where it has a kink.
    norms = np.linalg.norm(args[0], axis=-1)
    assert np.all(np.abs(norms * np.sqrt(c) - (1 - 1e-5)) > 1e-3)
  custom, plain = core.CUSTOM[name], core.PLAIN[name]
  out, vjp_custom = jax.vjp(custom, *args)
  _, vjp_plain = jax.vjp(plain, *args)
  g = jnp.asarray(np.random.default_rng(30).standard_normal(out.shape))
  for a, b in zip(vjp_custom(g), vjp_plain(g)):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
  check_grads(custom, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)


@pytest.mark.parametrize("op", ["expmap", "logmap", "dist", "transp", "midpoint", "frechet_mean",
                                "mobius_scalar_mul", "frechet_variance"])
def test_composite_gradients_match_finite_differences(op):
  c = jnp.asarray(0.8)
  x, y = jnp.asarray(points(40, 6, 3, 0.8, 0.7)), jnp.asarray(points(41, 6, 3, 0.8, 0.7))
  u = jnp.asarray(np.random.default_rng(42).standard_normal((6, 3)) * 0.4)
  fns = {
      "expmap": (lambda x, u, c: BALL.expmap(x, u, c), (x, u, c)),
      "logmap": (lambda x, y, c: BALL.logmap(x, y, c), (x, y, c)),
      "dist": (lambda x, y, c: BALL.dist(x, y, c), (x, y, c)),
      "transp": (lambda x, y, u, c: BALL.transp(x, y, u, c), (x, y, u, c)),
      "midpoint": (lambda x, c: BALL.midpoint(x, c), (x, c)),
      "frechet_mean": (lambda x, c: BALL.frechet_mean(x, c), (x, c)),
      "mobius_scalar_mul": (lambda x, c: BALL.mobius_scalar_mul(1.7, x, c), (x, c)),
      "frechet_variance": (lambda x, c: BALL.frechet_variance(x, BALL.midpoint(x, c), c),
                           (x, c)),
  }
  fn, args = fns[op]
  check_grads(fn, args, order=1, modes=["rev"], atol=1e-6, rtol=1e-6, eps=1e-6)
  plain = {"expmap": PLAIN.expmap, "logmap": PLAIN.logmap, "dist": PLAIN.dist}.get(op)
  if plain is not None:
    g_custom = jax.grad(lambda *a: jnp.sum(fn(*a) ** 2), argnums=range(len(args)))(*args)
    g_plain = jax.grad(lambda *a: jnp.sum(plain(*a) ** 2), argnums=range(len(args)))(*args)
    for a, b in zip(g_custom, g_plain):
      np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("ball", [BALL, PLAIN], ids=["custom", "plain"])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_safe_at_zero(ball, dtype):
  """exp_0, log_0 and ⊕ at the origin: identity Jacobians, no NaN, also in c."""
  zero = jnp.zeros((3, 4), dtype)
  g = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)), dtype)
  c = jnp.asarray(0.5, dtype)
  for fn in (lambda v, c: ball.expmap0(v, c), lambda v, c: ball.logmap0(v, c),
             lambda v, c: ball.mobius_add(v, zero, c), lambda v, c: ball.expmap(zero, v, c)):
    out, vjp = jax.vjp(fn, zero, c)
    gv, gc = vjp(g)
    np.testing.assert_array_equal(out, 0)
    np.testing.assert_allclose(gv, g, rtol=1e-6)
    assert gv.dtype == dtype and np.isfinite(gc) and gc == 0
  # Distance of a point to itself: zero, with a finite (zero) gradient.
  x = jnp.asarray(points(1, 3, 4, 0.5), dtype)
  assert np.all(np.isfinite(jax.grad(lambda x: ball.dist(x, x, c).sum())(x)))


def test_small_norms_use_stable_series():
  """Near 0 the closed-form H(u) cancels; the series keeps float32 gradients exact."""
  with jax.enable_x64(False):
    v = jnp.asarray(np.random.default_rng(3).standard_normal((5, 4)) * 1e-3, jnp.float32)
    g = jnp.ones_like(v)
    got = jax.vjp(lambda v, c: BALL.logmap0(v, c), v, jnp.float32(2.0))[1](g)
  want = jax.vjp(lambda v, c: BALL.logmap0(v, c), v.astype(jnp.float64), 2.0)[1](
      g.astype(jnp.float64))
  for a, b in zip(got, want):
    np.testing.assert_allclose(a, b, rtol=2e-6)


def test_boundary_float32_is_finite():
  with jax.enable_x64(False):
    c = jnp.float32(1.0)
    v = jnp.asarray(np.random.default_rng(5).standard_normal((6, 3)) * 30, jnp.float32)
    y = BALL.expmap0(v, c)  # Saturates tanh: projected to radius 1 - 4e-3.
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), 1 - 4e-3, rtol=1e-6)
    grads = jax.grad(lambda v, c: jnp.sum(BALL.logmap0(BALL.expmap0(v, c), c)), (0, 1))(v, c)
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_jit_vmap_and_sharding_agree():
  c = 0.3
  x, y = jnp.asarray(points(50, 16, 8, c)), jnp.asarray(points(51, 16, 8, c))
  want = BALL.logmap(x, y, c)
  np.testing.assert_allclose(jax.jit(BALL.logmap)(x, y, c), want, rtol=1e-12)
  np.testing.assert_allclose(jax.vmap(BALL.logmap, (0, 0, None))(x, y, c), want, rtol=1e-12)
  mesh = jax.make_mesh((len(jax.devices()),), ("data",))
  shard = NamedSharding(mesh, P("data"))
  xs, ys = jax.device_put(x, shard), jax.device_put(y, shard)
  loss = lambda x, y: jnp.sum(BALL.dist(x, y, c) ** 2)
  grads = jax.jit(jax.grad(loss, (0, 1)))(xs, ys)
  for got, ref in zip(grads, jax.grad(loss, (0, 1))(x, y)):
    np.testing.assert_allclose(got, ref, rtol=1e-10)
    assert got.sharding.is_equivalent_to(shard, 2)
  means = jax.vmap(BALL.frechet_mean, (0, None))(x.reshape(4, 4, 8), c)
  np.testing.assert_allclose(means[1], BALL.frechet_mean(x[4:8], c), rtol=1e-10)
