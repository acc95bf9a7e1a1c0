"""Activations written the way XLA:CPU evaluates fastest, equal to the usual ones.

`gelu` is the exact GELU of Hendrycks & Gimpel (2016), x Phi(x) = x/2 (1 + erf(x
/ sqrt 2)), as torch.nn.GELU() computes it. `jax.nn.gelu(approximate=False)`
writes it with erfc, which XLA:CPU evaluates with an exponential and a branch:
about 5x the time of this erf form on the same input (bench/pvt_profile.py;
within 5e-7 of each other in float32).
"""
import math

import jax
import jax.numpy as jnp

_INV_SQRT2 = 1 / math.sqrt(2)


def gelu(x: jax.Array) -> jax.Array:
  """Exact (erf) GELU: x / 2 (1 + erf(x / sqrt 2))."""
  half = jnp.asarray(0.5, x.dtype)
  return half * x * (1 + jax.lax.erf(x * jnp.asarray(_INV_SQRT2, x.dtype)))
