"""Mask operations on one layer (any shape) or a list of layers, each with
exact counts: the mask keeps exactly the number of entries asked for (ties
broken by position), so a drop-and-grow update regrows exactly what it
dropped and a layer's density is exactly round(n d) / n."""
import math

import jax
import jax.numpy as jnp


def keep_largest(scores: jax.Array, count) -> jax.Array:
  """Boolean mask of `scores`' shape, True at exactly `count` largest scores
  (`count` may be traced; ties go to the later position)."""
  flat = scores.reshape(-1)
  order = jnp.argsort(flat, stable=True)
  kept_in_order = jnp.arange(flat.size) >= flat.size - count
  return jnp.zeros(flat.size, bool).at[order].set(kept_in_order).reshape(scores.shape)


def keep_largest_global(scores: list[jax.Array], count) -> list[jax.Array]:
  """`keep_largest` over the concatenation of several layers' scores, split back."""
  flat = keep_largest(jnp.concatenate([s.reshape(-1) for s in scores]), count)
  sizes = [s.size for s in scores]
  starts = [sum(sizes[:i]) for i in range(len(sizes))]
  return [flat[a:a + n].reshape(s.shape) for a, n, s in zip(starts, sizes, scores)]


def random_mask(key: jax.Array, shape: tuple[int, ...], density: float) -> jax.Array:
  """A uniformly random mask with exactly round(n * density) entries kept."""
  n = math.prod(shape)
  return keep_largest(jax.random.uniform(key, shape), int(round(n * density)))


def magnitude_scores(weights: jax.Array, mask: jax.Array) -> jax.Array:
  """|w| at active entries, -inf at inactive ones: ranks only active weights."""
  return jnp.where(mask, jnp.abs(weights).astype(jnp.float32), -jnp.inf)


def drop_count(mask: jax.Array, fraction) -> jax.Array:
  """ceil(fraction * active entries): GraNet's / RigL's number of weights to replace."""
  active = jnp.sum(mask, dtype=jnp.int32)
  return jnp.minimum(jnp.ceil(fraction * active.astype(jnp.float32)).astype(jnp.int32), active)


def drop_and_grow(mask: jax.Array, weights: jax.Array, grow_scores: jax.Array, count
                  ) -> jax.Array:
  """The mask after dropping the `count` smallest-|w| active weights and
  growing `count` entries among the now inactive ones (the dropped included,
  as the official RigL and GraNet code) with the largest `grow_scores`."""
  active = jnp.sum(mask, dtype=jnp.int32)
  kept = keep_largest(magnitude_scores(weights, mask), active - count)
  grown = keep_largest(jnp.where(kept, -jnp.inf, grow_scores.astype(jnp.float32)), count)
  return kept | grown
