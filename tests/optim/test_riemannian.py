"""Riemannian SGD on the Grassmannian and its composition with plain optax."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vision_jax import config as config_lib
from vision_jax.geometry import grassmann as gr
from vision_jax.optim import builder, riemannian


def subspaces(seed, c=6, d=10, k=3, dtype=jnp.float32):
  return gr.random_point(jax.random.PRNGKey(seed), (c, d, k), dtype)


def run_steps(tx, params, grads_of, steps):
  state = tx.init(params)
  update = jax.jit(tx.update)
  for t in range(steps):
    updates, state = update(grads_of(t, params), state, params)
    params = optax.apply_updates(params, updates)
  return params


def random_grads(t, params):
  return jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(100 + t), p.shape, p.dtype),
                      params)


def orthonormality_errors(tx, steps=1000, seed=0) -> np.ndarray:
  """max |S^T S - I| after each of `steps` float32 updates with random gradients."""
  S = subspaces(seed)
  state = tx.init(S)

  @jax.jit
  def step(S, state, t):
    G = jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(100), t), S.shape, S.dtype)
    updates, state = tx.update(G, state, S)
    S = optax.apply_updates(S, updates)
    return S, state, jnp.abs(gr.mT(S) @ S - jnp.eye(S.shape[-1], dtype=S.dtype)).max()

  errors = []
  for t in range(steps):
    S, state, error = step(S, state, t)
    errors.append(error)
  assert S.dtype == jnp.float32
  return np.asarray(jax.device_get(errors))


def test_reorthonormalisation_removes_the_drift_of_the_geodesic_step():
  # Without it, the geodesic step's rounding error grows once it starts (at this
  # step size, past 1e-4 within ~25 steps and to ~0.8: measured); with the
  # default (every 5 steps) every one of the 1,000 steps stays orthonormal.
  drift = orthonormality_errors(riemannian.grassmann_sgd(0.2, momentum=0.9, reorth_every=10**9))
  kept = orthonormality_errors(riemannian.grassmann_sgd(0.2, momentum=0.9))
  assert drift.max() > 0.1
  assert kept.max() < 2e-5  # Measured 1.04e-5.


@pytest.mark.parametrize("retraction", ["qr", "polar"])
def test_qr_and_polar_retractions_stay_orthonormal_without_reorthonormalisation(retraction):
  tx = riemannian.grassmann_sgd(0.2, momentum=0.9, reorth_every=10**9, retraction=retraction)
  assert orthonormality_errors(tx).max() < 1e-5


def test_one_step_moves_lr_times_the_riemannian_gradient_norm():
  with jax.enable_x64(True):
    S = subspaces(1, dtype=jnp.float64)
    G = random_grads(1, S)
    lr = 0.01
    tx = riemannian.grassmann_sgd(lr, momentum=0.9, reorth_every=1)
    updates, _ = tx.update(G, tx.init(S), S)
    moved = S + updates
    want = lr * np.linalg.norm(np.asarray(gr.tangent(S, G)), axis=(-2, -1))
    np.testing.assert_allclose(gr.distance(S, moved), want, rtol=1e-9)


def qf(A):
  """Q of A = QR with diag(R) > 0."""
  Q, R = np.linalg.qr(A)
  return Q * np.sign(np.diagonal(R, axis1=-2, axis2=-1))[..., None, :]


def official_rsgd(S, grads, lr, momentum, reorth_every):
  """NumPy transcription of the GCR paper's update rule (manifolds.md, GCR):
  ambient momentum, tangent projection, geodesic by thin SVD, QR every
  `reorth_every` steps counted from 0 (with a positive-diagonal R; see
  optim/riemannian.py on the official code's sign flips). Ours re-orthonormalises
  by the polar factor, which differs from this QR by the rounding drift only."""
  S = np.array(S, np.float64)
  buf = np.zeros_like(S)
  for t, G in enumerate(grads):
    buf = momentum * buf + G
    D = buf - S @ (np.swapaxes(S, -1, -2) @ buf)
    U, s, Vt = np.linalg.svd(D, full_matrices=False)
    S = (S @ np.swapaxes(Vt, -1, -2) * np.cos(-lr * s)[:, None, :]
         + U * np.sin(-lr * s)[:, None, :]) @ Vt
    if t % reorth_every == 0:
      S = qf(S)
  return S


def test_matches_the_paper_update_over_several_steps():
  with jax.enable_x64(True):
    S0 = subspaces(2, dtype=jnp.float64)
    grads = [random_grads(t, S0) for t in range(7)]
    tx = riemannian.grassmann_sgd(0.1, momentum=0.9, reorth_every=5)
    ours = run_steps(tx, S0, lambda t, _: grads[t], 7)
    want = official_rsgd(S0, [np.asarray(g) for g in grads], 0.1, 0.9, 5)
    np.testing.assert_allclose(ours, want, atol=1e-10)


def model_params(with_head: bool):
  keys = jax.random.split(jax.random.PRNGKey(3), 4)
  params = {"backbone": {"conv": {"kernel": jax.random.normal(keys[0], (3, 3, 4, 8))},
                         "bn": {"scale": jnp.ones(8), "bias": jax.random.normal(keys[1], (8,))}},
            "fc": {"kernel": jax.random.normal(keys[2], (8, 5))}}
  if with_head:
    params["head"] = {"subspaces": gr.random_point(keys[3], (5, 8, 2))}
  return params


def opt_config(name: str, **subspaces) -> ml_collections.ConfigDict:
  c = config_lib.base_config().optimizer
  c.name = name
  c.weight_decay = 0.05
  c.groups = ((r".*subspaces$", {"name": "grassmann_sgd", **subspaces}),)
  return c


@pytest.mark.parametrize("name", ["sgd", "adamw", "lamb"])
def test_other_parameters_follow_plain_optax_exactly(name):
  schedule = optax.linear_schedule(0.1, 0.01, 10)
  cfg = opt_config(name)
  with_head, plain = model_params(True), model_params(False)
  composed = run_steps(builder.make_optimizer(cfg, schedule, with_head), with_head,
                       random_grads, 4)
  cfg.groups = ()
  alone = run_steps(builder.make_optimizer(cfg, schedule, plain), plain, random_grads, 4)
  composed.pop("head")
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), composed, alone)


def test_subspace_lr_is_the_schedule_times_the_factor_and_never_decayed():
  cfg = opt_config("sgd", lr_factor=0.5, momentum=0.0, reorth_every=1000)
  params = model_params(True)
  tx = builder.make_optimizer(cfg, optax.constant_schedule(0.2), params)
  grads = random_grads(0, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  S, G = params["head"]["subspaces"], grads["head"]["subspaces"]
  want = gr.expmap(S, -0.1 * gr.tangent(S, G)) - S  # No decay term.
  np.testing.assert_allclose(updates["head"]["subspaces"], want, atol=1e-6)


def test_bad_grassmann_parameters_are_config_errors():
  cfg = opt_config("sgd")
  cfg.groups = ((r".*fc/kernel", {"name": "grassmann_sgd"}),)  # [8, 5]: fine. A vector is not.
  builder.make_optimizer(cfg, optax.constant_schedule(0.1), model_params(False))
  cfg.groups = ((r".*bn/bias", {"name": "grassmann_sgd"}),)
  with pytest.raises(config_lib.ConfigError, match="backbone/bn/bias.*not \\[..., d, k\\]"):
    builder.make_optimizer(cfg, optax.constant_schedule(0.1), model_params(False))
  cfg.groups = ((r".*subspaces$", {"name": "grassmann_sgd", "retraction": "geodesc"}),)
  with pytest.raises(config_lib.ConfigError,
                     match=r"'optimizer.groups\[0\]' \(grassmann_sgd\): Unknown retraction 'geodesc'"):
    builder.make_optimizer(cfg, optax.constant_schedule(0.1), model_params(True))
  cfg.groups = ((r".*subspaces$", {"name": "grassmann_sgd", "reorth_every": 0}),)
  with pytest.raises(config_lib.ConfigError, match="reorth_every must be >= 1, got 0"):
    builder.make_optimizer(cfg, optax.constant_schedule(0.1), model_params(True))
  bad = config_lib.base_config()
  bad.total_steps = 1
  bad.optimizer.groups = ((r".*subspaces$", {"name": "grassman_sgd"}),)
  with pytest.raises(config_lib.ConfigError, match="optimizer.groups\\[0\\].name.*Did you mean 'grassmann_sgd'"):
    config_lib.validate(bad)
  bad.optimizer.groups = ((r".*subspaces$", {"name": "grassmann_sgd", "reorth": 5}),)
  with pytest.raises(config_lib.ConfigError, match="'optimizer.groups\\[0\\].reorth'. Did you mean 'reorth_every'"):
    config_lib.validate(bad)


def test_sharded_subspaces_update_like_unsharded():
  mesh = Mesh(np.array(jax.devices()[:8]), ("model",))
  S = subspaces(4, c=16, d=12, k=3)
  G = random_grads(4, S)
  tx = riemannian.grassmann_sgd(0.05, reorth_every=1)
  state = tx.init(S)
  want, _ = jax.jit(tx.update)(G, state, S)
  spec = NamedSharding(mesh, P("model"))
  put = lambda x: jax.device_put(x, spec)
  state_spec = riemannian.GrassmannSGDState(NamedSharding(mesh, P()), spec)
  got, new_state = jax.jit(tx.update, out_shardings=(spec, state_spec))(
      put(G), jax.device_put(state, state_spec), put(S))
  assert got.sharding == spec and new_state.momentum.sharding == spec
  np.testing.assert_allclose(got, want, atol=1e-6)
