"""The `sparsity` optimizer transform: masked weights and moments exactly zero,
exact prune / regrow counts, GMP's per-layer and global targets, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vision_jax import config as config_lib
from vision_jax.errors import ConfigError
from vision_jax.optim import builder, transforms as optim_transforms
from vision_jax.sparsity import masks, rules, transform


def make_params():
  shapes = {"stem": {"kernel": (3, 3, 3, 8), "bias": (8,)},
            "conv": {"kernel": (3, 3, 8, 16), "scale": (16,)}, "head": {"kernel": (16, 10)}}
  leaves, tree = jax.tree.flatten(shapes, is_leaf=lambda x: isinstance(x, tuple))
  keys = jax.random.split(jax.random.PRNGKey(0), len(leaves))
  return jax.tree.unflatten(tree, [jax.random.normal(k, s) for k, s in zip(keys, leaves)])


def run(tx, params, steps: int, seed: int = 1):
  """`steps` updates of `tx` on random gradients, from the projected params;
  returns the params, state and every step's masks."""
  state = tx.init(params)
  params = optim_transforms.project_params(state, params)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  history = []
  for i in range(steps):
    grads = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(seed * 1000 + i), x.shape),
                         params)
    updates, state = step(params, state, grads)
    params = optax.apply_updates(params, updates)
    history.append(state.selected() if hasattr(state, "selected") else None)
  return params, state, history


def zero_where_masked(tree, selected) -> bool:
  values = transform._by_name(tree, list(selected))
  return all(bool(jnp.all(jnp.where(m, True, values[n] == 0))) for n, m in selected.items())


METHOD_ARGS = {
    "static": {"distribution": "erk"},
    "gmp": {"end_steps": 60, "frequency_steps": 10},
    "rigl": {"end_steps": 80, "frequency_steps": 10},
    "set": {"end_steps": 80, "frequency_steps": 10},
    "granet": {"end_steps": 60, "frequency_steps": 10, "total_steps": 100},
}


@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_masked_weights_and_adam_moments_stay_exactly_zero_for_100_steps(method):
  params = make_params()
  tx = transform.sparsity(optax.adam(0.05), method, density=0.2, exclude="stem/kernel",
                          **METHOD_ARGS[method])
  final, state, history = run(tx, params, 100)
  selected = state.selected()
  assert list(selected) == ["conv/kernel", "head/kernel"]  # Not the stem, biases or scales.
  assert zero_where_masked(final, selected)
  adam = state.inner[0]
  assert zero_where_masked(adam.mu, selected) and zero_where_masked(adam.nu, selected)
  # The unselected parameters took plain Adam steps on the same gradients.
  dense, _, _ = run(optax.adam(0.05), params, 100)
  np.testing.assert_array_equal(final["stem"]["kernel"], dense["stem"]["kernel"])
  np.testing.assert_array_equal(final["conv"]["scale"], dense["conv"]["scale"])
  metrics = state.step_metrics(final)
  assert float(metrics["sparsity/masks"]) == pytest.approx(0.8, abs=2 / (1152 + 160))
  assert float(metrics["sparsity/measured"]) >= float(metrics["sparsity/masks"])
  if method in ("rigl", "set"):  # Drop-and-grow keeps each layer's count and moves the mask.
    assert all(int(h[n].sum()) == int(history[0][n].sum()) for h in history for n in selected)
    assert any(bool(jnp.any(history[-1][n] != history[0][n])) for n in selected)


def test_drop_and_grow_regrows_exactly_what_it_drops():
  key_w, key_g, key_m = jax.random.split(jax.random.PRNGKey(3), 3)
  weights = jax.random.normal(key_w, (6, 50))
  grads = jax.random.normal(key_g, (6, 50))
  mask = masks.random_mask(key_m, (6, 50), 0.3)
  weights = jnp.where(mask, weights, 0)
  count = masks.drop_count(mask, 0.25)
  assert int(count) == int(np.ceil(0.25 * 90))
  new = masks.drop_and_grow(mask, weights, jnp.abs(grads), count)
  assert int(new.sum()) == int(mask.sum()) == 90
  # Kept: the 90 - count largest active |w|. Grown: the `count` largest |g|
  # among all other entries, the just-dropped included (as the official code).
  w, g, m = (np.asarray(x).reshape(-1) for x in (jnp.abs(weights), jnp.abs(grads), mask))
  active = np.flatnonzero(m)
  kept = active[np.argsort(w[active], kind="stable")[int(count):]]
  others = np.setdiff1d(np.arange(300), kept)
  grown = others[np.argsort(g[others], kind="stable")[-int(count):]]
  expected = np.zeros(300, bool)
  expected[kept] = expected[grown] = True
  np.testing.assert_array_equal(np.asarray(new).reshape(-1), expected)


def test_gmp_per_layer_counts_follow_the_cubic_schedule():
  params = make_params()
  tx = transform.sparsity(optax.sgd(0.01), "gmp", density=0.1, begin_steps=10, end_steps=50,
                          frequency_steps=10, include=".*kernel")
  _, state, history = run(tx, params, 60)
  sizes = {n: m.size for n, m in state.selected().items()}
  for t in range(1, 61):  # history[t - 1] holds the masks after step t.
    pruned_at = max((s for s in (10, 20, 30, 40, 50) if s <= t), default=None)
    sparsity = 0.0 if pruned_at is None else 0.9 * (1 - (1 - (pruned_at - 10) / 40) ** 3)
    for n, size in sizes.items():
      assert int(history[t - 1][n].sum()) == round(size * (1 - sparsity)), (t, n)


def test_gmp_starts_dense_and_prunes_to_its_initial_sparsity_at_begin():
  params = make_params()
  tx = transform.sparsity(optax.sgd(0.01), "gmp", density=0.2, initial_density=0.5,
                          begin_steps=5, end_steps=25, frequency_steps=5)
  _, state, history = run(tx, params, 6)
  conv = {t: int(h["conv/kernel"].sum()) for t, h in enumerate(history, start=1)}
  assert conv[1] == conv[4] == 1152 and conv[5] == conv[6] == 576  # s_i = 0.5 at step 5.


def test_gmp_global_scope_ranks_all_layers_together():
  params = make_params()
  params["head"]["kernel"] = 100.0 + jnp.abs(params["head"]["kernel"])  # Larger than all others..
  tx = transform.sparsity(optax.sgd(0.0), "gmp", density=0.15, scope="global", end_steps=10,
                          frequency_steps=10)
  _, state, _ = run(tx, params, 10)
  selected = state.selected()
  total = sum(m.size for m in selected.values())
  assert sum(int(m.sum()) for m in selected.values()) == int(np.floor(total * 0.15))
  assert bool(jnp.all(selected["head/kernel"]))  # The head's 160 are the largest of all.
  assert 0 < int(selected["conv/kernel"].sum()) < 229 - 160


def test_rigl_drops_the_smallest_weights_and_grows_the_largest_gradients():
  params = {"w": {"kernel": jnp.arange(1.0, 21.0).reshape(4, 5)}}
  tx = transform.sparsity(optax.sgd(0.0), "rigl", density=0.5, distribution="uniform",
                          end_steps=10, frequency_steps=1, drop_fraction=0.2)
  state = tx.init(params)
  start = np.asarray(state.selected()["w/kernel"]).reshape(-1)
  inactive, active = np.flatnonzero(~start), np.flatnonzero(start)
  grads = np.zeros(20, np.float32)
  grads[inactive[:2]] = (-50.0, 40.0)  # |g| ranks, sign ignored.
  grads[active[2:]] = 1000.0  # Still active after the drop: never candidates to grow.
  start_params = state.project(params)
  updates, state = tx.update({"w": {"kernel": jnp.asarray(grads.reshape(4, 5))}}, state,
                             start_params)
  expected = start.copy()
  # ceil(0.2 (1 + cos(pi / 10)) / 2 x 10) = 2 replaced; the weights are 1..20.
  expected[active[:2]] = False
  expected[inactive[:2]] = True
  np.testing.assert_array_equal(np.asarray(state.selected()["w/kernel"]).reshape(-1), expected)
  new_weights = optax.apply_updates(start_params, updates)["w"]["kernel"].reshape(-1)
  np.testing.assert_array_equal(new_weights[inactive[:2]], 0.0)  # Grown weights start at 0.
  np.testing.assert_array_equal(new_weights[active[:2]], 0.0)  # Dropped ones are 0.


def test_bad_specs_fail_before_compute_with_the_reason():
  cfg = config_lib.base_config().optimizer
  cases = [({"name": "sparsity", "method": "lottery", "density": 0.1}, "Unknown sparsity method"),
           ({"name": "sparsity", "method": "gmp", "density": 0.1, "drop_fraction": 0.3},
            r"takes no argument\(s\) \['drop_fraction'\]"),
           ({"name": "sparsity", "method": "static"}, "needs 'density' in"),
           ({"name": "sparsity", "method": "gmp", "density": 0.1, "scope": "net"}, "'scope'")]
  for spec, message in cases:
    cfg.transforms = (spec,)
    with pytest.raises(ConfigError, match=message):
      config_lib.check_optimizer(cfg)
  cfg.transforms = ({"name": "sparsity", "method": "static", "density": 0.1,
                     "include": ".*"},)
  with pytest.raises(ConfigError, match=r"selects 'conv/scale' of shape \(16,\); only kernels"):
    builder.make_optimizer(cfg, optax.constant_schedule(0.1), make_params())


def test_epoch_keys_become_steps_and_total_steps_fills_in():
  cfg = config_lib.base_config().optimizer
  cfg.transforms = ({"name": "sparsity", "method": "rigl", "density": 0.5,
                     "frequency_epochs": 0.5},)
  tx = builder.make_optimizer(cfg, optax.constant_schedule(0.1), make_params(),
                              {"steps_per_epoch": 8, "total_steps": 40, "seed": 0})
  _, _, history = run(tx, make_params(), 32)
  changed = [t + 1 for t in range(1, 32) if any(
      bool(jnp.any(history[t][n] != history[t - 1][n])) for n in history[t])]
  assert changed == [4, 8, 12, 16, 20, 24, 28]  # Every 4 steps until 0.75 x 40 = 30.
  with pytest.raises(ConfigError, match="needs the run's steps per epoch"):
    builder.make_optimizer(cfg, optax.constant_schedule(0.1), make_params())


def test_imp_prunes_each_cycle_and_rewinds_exactly_to_step_k():
  params = make_params()
  tx = transform.sparsity(optax.sgd(0.05, momentum=0.9), "imp", density=0.25, cycle_steps=10,
                          rewind_steps=3, prune_fraction=0.5, include="conv/kernel")
  state = tx.init(params)
  step = jax.jit(lambda p, s, g: tx.update(g, s, p))
  after = jax.jit(optim_transforms.after_update)
  history = {}
  for t in range(1, 36):
    grads = jax.tree.map(lambda x: jax.random.normal(jax.random.PRNGKey(t), x.shape), params)
    updates, state = step(params, state, grads)
    params = after(state, optax.apply_updates(params, updates))
    history[t] = (params, state)
  size = 3 * 3 * 8 * 16
  kept = {t: int(h[1].selected()["conv/kernel"].sum()) for t, h in history.items()}
  assert (kept[9], kept[10], kept[19], kept[20], kept[30], kept[35]) == (
      size, size // 2, size // 2, size // 4, size // 4, size // 4)  # Stops at the target.
  for t in (10, 20):  # Every parameter back at its step-3 value, the pruned ones at 0.
    rewound, mask = history[t][0], history[t][1].selected()["conv/kernel"]
    np.testing.assert_array_equal(rewound["stem"]["kernel"], history[3][0]["stem"]["kernel"])
    np.testing.assert_array_equal(rewound["conv"]["kernel"],
                                  np.where(mask, history[3][0]["conv"]["kernel"], 0))
    assert all(not np.any(x) for x in jax.tree.leaves(history[t][1].inner))  # Fresh momentum.


def test_ap_removes_the_negative_weights_that_moved_least():
  weights = {"a": jnp.array([5.0, -4.0, -3.0, 0.5, -6.0, 2.0, -2.5, 7.0])}
  reference = {"a": jnp.array([5.0, -1.0, -2.9, 0.5, -6.1, 0.0, -0.5, 7.0])}
  active = {"a": jnp.ones(8, bool)}
  # Keep 5 of 8, one of the 3 removals AP's (floor(0.2 x 8) = 1): magnitude keeps
  # the 6 largest |w| (drops 0.5 and 2.0), AP then drops the negative weight
  # with the least movement among them: -6.0 (moved 0.1).
  got = rules.prune_global(weights, active, jnp.int32(5), reference, ap_fraction=0.2)
  np.testing.assert_array_equal(got["a"], [True, True, True, False, False, False, True, True])
  plain = rules.prune_global(weights, active, jnp.int32(5))
  np.testing.assert_array_equal(plain["a"], [True, True, True, False, True, False, False, True])


def test_cycled_schedule_restarts_every_cycle():
  cfg = config_lib.base_config().schedule
  cfg.name = "cosine"
  schedule = builder.make_schedule(cfg, 1.0, total_steps=30, warmup_steps=2, cycle_steps=10)
  plain = builder.make_schedule(config_lib.base_config().schedule, 1.0, 10, 2)
  for t in range(30):
    assert float(schedule(t)) == pytest.approx(float(plain(t % 10)), abs=1e-7)


def test_keep_largest_equals_a_stable_sort_with_ties_and_infinities():
  rng = np.random.default_rng(0)
  select = jax.jit(masks.keep_largest)
  for n in (1, 7, 50):
    for trial in range(30):
      values = (rng.choice([-np.inf, -2.0, -0.0, 0.0, 1.0, 3.5, np.inf], n) if trial % 2
                else rng.normal(size=n)).astype(np.float32)
      count = int(rng.integers(0, n + 1))
      expected = np.zeros(n, bool)  # Ties: the later positions, as a stable ascending sort.
      expected[np.argsort(np.where(values == 0, 0, values), kind="stable")[n - count:]] = True
      np.testing.assert_array_equal(select(jnp.asarray(values), count), expected & (count > 0))
