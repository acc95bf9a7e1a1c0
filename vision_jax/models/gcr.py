"""GCR classifier (Wang, Li & Zhang, ICCV 2023, arXiv:2308.01547): any
backbone of the model table, built with num_classes=0 (pooled features), and
the Grassmann class-subspace head of `vision_jax.models.heads.gcr_head`."""
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from vision_jax.models import features as features_lib
from vision_jax.models.heads.gcr_head import GrassmannHead

Dtype = Any


class GrassmannClassifier(features_lib.WithBackbone, nn.Module):
  """Backbone features [B, d] + a GCR head.
  `__call__(images, train=...)` -> (logits, the backbone's aux)."""
  num_classes: int
  backbone: str = "resnet50d"  # A model name of the table.
  backbone_args: dict | None = None  # Its constructor arguments.
  subspace_dim: int = 8
  gamma: float = 25.0
  dtype: Dtype = jnp.float32
  BACKBONE_ARGS = (("num_classes", 0),)  # The backbone's pooled features, no classifier.

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    features, aux = self.part("backbone", name="backbone")(x, train=train)
    head = GrassmannHead(self.num_classes, self.subspace_dim, self.gamma, name="head")
    return head(features), aux
