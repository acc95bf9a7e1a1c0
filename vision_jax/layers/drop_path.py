"""Stochastic depth (Huang et al., 2016, "Deep Networks with Stochastic Depth",
arXiv:1603.09382) as used in vision transformers: in training, the residual
branch of each example is dropped with probability `rate` and kept branches
are scaled by 1 / (1 - rate), so the expectation matches evaluation, where the
branch is always kept. Draws from the "dropout" rng stream.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp


class DropPath(nn.Module):
  """Per-example residual-branch drop; identity when `train` is False."""
  rate: float = 0.  # Probability of dropping the branch of an example.

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not train or self.rate == 0.:
      return x
    keep = 1. - self.rate
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))
