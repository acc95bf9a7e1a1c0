"""Grassmann Class Representation (GCR): Wang, Li & Zhang, "Get the Best of
Both Worlds: Improving Accuracy and Transferability by Grassmann Class
Representation", ICCV 2023, arXiv:2308.01547.

Class i is a k-dimensional subspace span(S_i) of the feature space, S_i in
R^{d x k} orthonormal, and its logit is the norm of the normalised feature's
projection onto it (Sec. 3.2):

    logit_i = gamma * || S_i^T x / ||x|| ||,   0 <= logit_i <= gamma,

invariant to the basis (S_i -> S_i Q for orthogonal Q). The subspaces
[C, d, k] are the parameter `subspaces`, initialised Haar-uniform (QR of a
Gaussian, as the official head) and trained on the Grassmannian by
`optim.riemannian` (Riemannian SGD); everything else trains as usual.
Official defaults: k = 8, gamma = 25.
"""
import flax.linen as nn
import jax.numpy as jnp

from vision_jax.geometry import grassmann

# Added under the square root of the squared projection norm: a feature
# orthogonal to a subspace gets logit 0 and a zero, not NaN, gradient.
MIN_SQUARED_NORM = 1e-24
# Features are divided by max(||x||, NORMALIZE_EPS), as torch's F.normalize.
NORMALIZE_EPS = 1e-12


class GrassmannHead(nn.Module):
  """Features [B, d] -> logits [B, C] = gamma * ||S_c^T x_hat||."""
  num_classes: int
  subspace_dim: int = 8  # k.
  gamma: float = 25.0  # Logit scale.

  @nn.compact
  def __call__(self, features):
    x = jnp.asarray(features, jnp.float32)
    x = x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), NORMALIZE_EPS)
    subspaces = self.param("subspaces", grassmann.random_point,
                           (self.num_classes, x.shape[-1], self.subspace_dim))
    projections = jnp.einsum("bd,cdk->bck", x, subspaces)
    return self.gamma * jnp.sqrt(jnp.sum(projections * projections, -1) + MIN_SQUARED_NORM)
