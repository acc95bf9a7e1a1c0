"""The mask updates of step t for a resolved `methods.Method`, on dicts
{layer: array} of the masked layers (traced inside the train step; each rule
runs under `lax.cond` only on the steps where it applies)."""
from typing import Callable

import jax
import jax.numpy as jnp

from vision_jax.sparsity import masks as mask_ops, methods, schedules


def _count(masks: dict):
  return sum(jnp.sum(m, dtype=jnp.int32) for m in masks.values())


def prunes_at(m: methods.Method, t, masks: dict | None = None):
  """Whether step t prunes: GMP's schedule, or the end of an IMP cycle while
  the masks are above the target density."""
  if m.cycle:
    size = sum(x.size for x in masks.values())
    return (t % m.cycle == 0) & (t > 0) & (_count(masks) > imp_target(m, size))
  if m.prunes:
    return schedules.updates_at(t, m.begin, m.end, m.frequency)
  return jnp.zeros((), bool)


def grows_at(m: methods.Method, t):
  if not m.grow:
    return jnp.zeros((), bool)
  return schedules.updates_at(t, m.begin, m.grow_end, m.frequency) & (t > m.begin)


def imp_target(m: methods.Method, size: int) -> int:
  return int(round(size * m.density))


def updated_masks(m: methods.Method, t, weights: Callable[[], dict], grads: dict, masks: dict,
                  reference: dict | None, seed: int) -> dict:
  """The masks after step t's pruning (GMP schedule or IMP cycle, with AP),
  then drop-and-grow; `weights()` gives the step's new weights, computed
  only inside the branches that run on update steps."""
  if m.prunes or m.cycle:
    masks = jax.lax.cond(prunes_at(m, t, masks),
                         lambda ms: _prune_step(m, t, weights(), ms, reference), lambda ms: ms,
                         masks)
  if m.grow:
    fraction = schedules.cosine_drop_fraction(t - m.begin, max(m.grow_end - m.begin, 1),
                                              m.drop_fraction, m.drop_fraction_final)
    key = jax.random.fold_in(jax.random.PRNGKey(seed + 1), t)
    masks = jax.lax.cond(grows_at(m, t),
                         lambda ms: _drop_and_grow(m.grow, fraction, weights(), grads, ms, key),
                         lambda ms: ms, masks)
  return masks


def _prune_step(m: methods.Method, t, weights: dict, masks: dict, reference) -> dict:
  size = sum(x.size for x in masks.values())
  if m.cycle:  # IMP: the prune_fraction of the survivors, not below the target.
    active = _count(masks)
    keep = jnp.maximum(jnp.round(active * (1.0 - m.prune_fraction)).astype(jnp.int32),
                       imp_target(m, size))
    return prune_global(weights, masks, keep, reference, m.ap_fraction)
  sparsity = schedules.gmp_sparsity(t, 1.0 - m.density, m.begin, m.end, 1.0 - m.init_density)
  if m.scope == "layer":
    out = {}
    for n, mask in masks.items():
      keep = jnp.round(mask.size * (1.0 - sparsity)).astype(jnp.int32)
      out[n] = mask_ops.keep_largest(mask_ops.magnitude_scores(weights[n], mask),
                                     jnp.minimum(keep, jnp.sum(mask, dtype=jnp.int32)))
    return out
  keep = jnp.floor(size * (1.0 - sparsity)).astype(jnp.int32)
  return prune_global(weights, masks, keep, reference, m.ap_fraction)


def prune_global(weights: dict, masks: dict, keep, reference: dict | None = None,
                 ap_fraction: float = 0.0) -> dict:
  """Masks keeping `keep` weights over all layers (never more than are
  active): by magnitude, except that with `ap_fraction` the last
  floor(ap_fraction x active) removals are AP's, the surviving negative
  weights that moved least from `reference`."""
  names = list(masks)
  active = _count(masks)
  keep = jnp.minimum(keep, active)
  n_ap = jnp.zeros((), jnp.int32)
  if ap_fraction:
    n_ap = jnp.minimum(jnp.floor(active * ap_fraction).astype(jnp.int32), active - keep)
  scores = [mask_ops.magnitude_scores(weights[n], masks[n]) for n in names]
  kept = dict(zip(names, mask_ops.keep_largest_global(scores, keep + n_ap)))
  if not ap_fraction:
    return kept
  moved = [jnp.where(kept[n] & (weights[n] < 0),
                     -jnp.abs(weights[n] - reference[n]).astype(jnp.float32), -jnp.inf)
           for n in names]
  removed = mask_ops.keep_largest_global(moved, n_ap)
  return {n: kept[n] & ~r for n, r in zip(names, removed)}


def _drop_and_grow(grow: str, fraction, weights: dict, grads: dict, masks: dict, key) -> dict:
  out = {}
  for i, (n, mask) in enumerate(masks.items()):
    if grow == "gradient":
      scores = jnp.abs(grads[n])
    else:
      scores = jax.random.uniform(jax.random.fold_in(key, i), mask.shape)
    out[n] = mask_ops.drop_and_grow(mask, weights[n], scores, mask_ops.drop_count(mask, fraction))
  return out
