"""Riemannian SGD on the Grassmannian, as an optax transformation; the
optimizer `grassmann_sgd` of a parameter group (`vision_jax.optim.builder`).

GCR (Wang, Li & Zhang, ICCV 2023, Alg. 1 and the official RSGD) updates each
class subspace S [..., d, k] per step t with learning rate lr_t:

    M <- mu M + G                 (momentum on the Euclidean gradient, not transported)
    D  = (I - S S^T) M            (Riemannian gradient)
    S <- R_S(-lr_t D)             (the geodesic; or a QR / polar retraction)
    S <- orth(S)  if t % reorth_every == 0   (re-orthonormalisation against drift)

with no weight decay on S. In the official wrappers the subspaces follow the
main optimizer's schedule times a constant `lr_factor` (1 for SGD; e.g.
0.3 / 0.008 beside LAMB in the RSB-A3 recipe) and re-orthonormalise every 5
steps beside SGD and every step beside AdamW/LAMB.

The official code re-orthonormalises by LAPACK's Householder QR, whose Q
flips the sign of the columns with R_ii < 0; the momentum buffer, kept in the
old basis, then pushes those columns the wrong way until it decays. Here
orth is the polar factor by Newton-Schulz (`grassmann.reorthonormalize`): the
nearest orthonormal matrix, so the basis, and the momentum's meaning, change
only by the rounding drift removed. The default geodesic step and orth use
matrix products only (no SVD or QR call), so the update batches and shards like
a matmul; on CPU this also avoids LAPACK batch kernels, which deadlock when
several XLA CPU devices of one process run them at once.
"""
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from vision_jax.geometry import grassmann
from vision_jax.sharding import path_name

class GrassmannSGDState(NamedTuple):
  count: jax.Array  # Steps taken.
  momentum: Any  # Ambient momentum buffers, shaped like the subspaces.


def grassmann_sgd(learning_rate: float | optax.Schedule, momentum: float = 0.9,
                  reorth_every: int = 5, retraction: str = "geodesic"
                  ) -> optax.GradientTransformation:
  """Riemannian SGD with momentum for a pytree of orthonormal [..., d, k] leaves.

  Updates are `new_S - S`, so `optax.apply_updates` lands on the new point.
  """
  if retraction not in grassmann.RETRACTIONS:
    raise ValueError(f"Unknown retraction {retraction!r}; choose one of "
                     f"{sorted(grassmann.RETRACTIONS)}.")
  if reorth_every < 1:
    raise ValueError(f"reorth_every must be >= 1, got {reorth_every}.")
  retract = grassmann.RETRACTIONS[retraction]

  def init(params):
    check_subspaces(params)
    return GrassmannSGDState(jnp.zeros((), jnp.int32), jax.tree.map(jnp.zeros_like, params))

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("grassmann_sgd needs the current subspaces (params) in update().")
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    buffers = jax.tree.map(lambda m, g: momentum * m + g, state.momentum, grads)
    reorth = state.count % reorth_every == 0

    def move(S, M):
      new = retract(S, -jnp.asarray(lr, S.dtype) * grassmann.tangent(S, M))
      new = jax.lax.cond(reorth, grassmann.reorthonormalize, lambda x: x, new)
      return new - S

    return jax.tree.map(move, params, buffers), GrassmannSGDState(state.count + 1, buffers)

  return optax.GradientTransformation(init, update)


def check_subspaces(params) -> None:
  """Raises ValueError for a leaf that cannot hold orthonormal [..., d, k] columns."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    if isinstance(leaf, optax.MaskedNode):
      continue
    if len(leaf.shape) < 2 or leaf.shape[-2] < leaf.shape[-1]:
      raise ValueError(f"Parameter {path_name(path)!r} of shape {tuple(leaf.shape)} is in a "
                       "grassmann_sgd group but is not [..., d, k] with d >= k.")
