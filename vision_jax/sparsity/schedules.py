"""Pruning schedules (the step may be a traced array inside a train step).

- GMP (Zhu & Gupta, "To prune, or not to prune", arXiv:1710.01878, Eq. 1):
  s_t = s_f + (s_i - s_f) (1 - p)^3, p = clip((t - t_0) / (t_end - t_0), 0, 1);
  masks are recomputed every `frequency` steps.
- The drop ("death") fraction of RigL / SET / GraNet updates, cosine-annealed
  (Evci et al., arXiv:1911.11134; Liu et al., GraNet, arXiv:2106.10404):
  r_t = r_min + (r_0 - r_min) (1 + cos(pi t / T)) / 2, GraNet's r_0 = 0.5,
  r_min = 0.005.
"""
import jax
import jax.numpy as jnp
import numpy as np


def _xp(step):
  """jax.numpy for array (traced) steps, numpy (float64, exact) for Python numbers."""
  return jnp if isinstance(step, jax.Array) else np


def gmp_sparsity(step, final: float, begin: int, end: int, initial: float = 0.0):
  """The target sparsity of GMP's cubic schedule at `step`."""
  if end <= begin:
    raise ValueError(f"GMP needs end > begin, got begin={begin}, end={end}.")
  progress = _xp(step).clip((step - begin) / (end - begin), 0.0, 1.0)
  return final + (initial - final) * (1.0 - progress) ** 3


def updates_at(step, begin: int, end: int, frequency: int):
  """Whether masks change at `step`: every `frequency` steps from `begin`, and
  at `end` itself (so a schedule ends at its target however the steps fall)."""
  return (begin <= step) & (step <= end) & (((step - begin) % frequency == 0) | (step == end))


def cosine_drop_fraction(step, total: int, initial: float = 0.5, final: float = 0.005):
  """The fraction of active weights a drop-and-grow update replaces at `step`."""
  xp = _xp(step)
  t = xp.clip(step / total, 0.0, 1.0)
  return final + (initial - final) * (1.0 + xp.cos(np.pi * t)) / 2.0
