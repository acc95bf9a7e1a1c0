"""Salient object segmentation as 8-neighbour connectivity prediction
(ConnNet, Kampffmeyer et al., IEEE TIP 2019, arXiv:1804.07836, Sec. III).

The model returns {"connectivity": [B, h, w, 8] logits} at 1/k of the input
(`vision_jax.models.connnet`); the task resizes them bilinearly (PyTorch's
align_corners=False) to the label size [H, W] and trains each channel k as a
binary classifier of "p and its k-th neighbour are both salient"
(`connectivity.connectivity_targets`) with binary cross-entropy,

  L = (1 / N) * sum_{b, p, k} w_k(b, p) * BCE(sigmoid(z_k(b, p)), C_k(b, p)),

N = sum of w over the step's real examples, w = 1 on determined entries (0
where an ignore pixel leaves C_k(p) unknown) and on real rows only. The
paper trains with binary cross-entropy on the connectivity cube; no class
weighting is applied here, and the loss is its mean over entries (a sum over
the 8 channels and a mean over pixels would be 8 times it). Under gradient accumulation N is the
whole step's (`normalizers`), so the micro-batch losses add up to the loss
of the whole batch.

Inference: sigmoid, then the mean over the 8 directions (`aggregate`, the
paper's; "max" optional) at the label size -> "saliency" [B, H, W].
"""
import jax
import jax.numpy as jnp
import optax

from vision_jax.batch import MASK, SEGMENTATION
from vision_jax.layers.interpolate import resize_bilinear
from vision_jax.tasks.base import Task
from vision_jax.tasks.saliency import connectivity

CONNECTIVITY = "connectivity"  # The model's output key: logits [B, h, w, 8].


class ConnectivityTask(Task):
  """Loss and saliency predictions for {"connectivity": [B, h, w, 8] logits}
  against dense labels [B, H, W] (0 background, other salient, 255 ignore)."""

  def __init__(self, aggregation: str = "mean", labels_key: str = SEGMENTATION,
               ignore: int = connectivity.IGNORE):
    if aggregation not in connectivity.AGGREGATIONS:
      raise ValueError(f"aggregation must be one of {connectivity.AGGREGATIONS}, "
                       f"got {aggregation!r}.")
    self.aggregation, self.labels_key, self.ignore = aggregation, labels_key, ignore

  def check(self, model) -> None:
    channels = getattr(model, "num_neighbours", connectivity.NUM_NEIGHBOURS)
    if channels != connectivity.NUM_NEIGHBOURS:
      raise ValueError(f"The connectivity task needs {connectivity.NUM_NEIGHBOURS} output "
                       f"channels; the model has {channels}.")

  def logits(self, outputs: dict, batch: dict) -> jax.Array:
    """The connectivity logits resized to the label size: float32 [B, H, W, 8]."""
    z = jnp.asarray(outputs[CONNECTIVITY], jnp.float32)
    if z.ndim != 4 or z.shape[-1] != connectivity.NUM_NEIGHBOURS:
      raise ValueError(f"outputs[{CONNECTIVITY!r}] must be [B, h, w, "
                       f"{connectivity.NUM_NEIGHBOURS}], got {z.shape}.")
    return resize_bilinear(z, batch[self.labels_key].shape[1:3])

  def _weights(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    targets, weights = connectivity.connectivity_targets(batch[self.labels_key], self.ignore)
    real = jnp.asarray(batch[MASK], jnp.float32)[:, None, None, None]
    return targets, weights * real

  def normalizers(self, aux: dict, batch: dict) -> dict:
    """The determined (pixel, direction) entries and the real examples of the batch."""
    del aux
    _, weights = self._weights(batch)
    return {"entries": jnp.sum(weights), "examples": jnp.sum(batch[MASK])}

  def loss(self, outputs: dict, aux: dict, batch: dict,
           normalizers: dict | None = None) -> tuple[jax.Array, dict]:
    """Mean BCE over the step's determined entries (`normalizers`; default: this batch's)."""
    targets, weights = self._weights(batch)
    if normalizers is None:
      normalizers = self.normalizers(aux, batch)
    entries = jnp.maximum(normalizers["entries"], 1.0)
    z = self.logits(outputs, batch)
    loss = jnp.sum(optax.sigmoid_binary_cross_entropy(z, targets) * weights) / entries
    correct = ((z > 0) == (targets > 0.5)).astype(jnp.float32)
    accuracy = jnp.sum(correct * weights) / entries
    return loss, {"loss": loss, "connectivity_accuracy": accuracy}

  def predict(self, outputs: dict, aux: dict, batch: dict) -> dict:
    """The aggregated saliency probability [B, H, W] at the label size and the label."""
    del aux
    probabilities = jax.nn.sigmoid(self.logits(outputs, batch))
    return {"saliency": connectivity.aggregate(probabilities, self.aggregation),
            "label": batch[self.labels_key]}

  def default_evaluators(self) -> dict:
    return {"saliency": {"kind": "saliency"}}
