"""Elementwise detection losses: sigmoid focal loss (Lin et al., 2017,
arXiv:1708.02002, Eq. 5) and L1, as mmcv `sigmoid_focal_loss` / mmdet
`FocalLoss(use_sigmoid=True, gamma=2, alpha=0.25)` and `L1Loss`.

Focal loss with p = sigmoid(x) and target t in {0, 1} (one-hot over classes;
background is all zeros):
  p_t = p if t = 1 else 1 - p,  alpha_t = alpha if t = 1 else 1 - alpha,
  FL = -alpha_t (1 - p_t)^gamma log(p_t).
Written for soft t as mmdet's `py_sigmoid_focal_loss`,
  FL = [alpha t + (1 - alpha)(1 - t)] * [(1 - p) t + p (1 - t)]^gamma * BCE(x, t),
with log p = log_sigmoid(x), log(1 - p) = log_sigmoid(-x), 1 - p = sigmoid(-x),
so it is finite with finite gradients for any finite logit. (mmcv's CUDA kernel
clamps p at FLT_MIN inside the log, which only matters for |x| > ~87.)
Reduction is the caller's: mmdet sums and divides by `num_total_pos`.
"""
import jax
import jax.numpy as jnp


def sigmoid_focal_loss(logits: jnp.ndarray, targets: jnp.ndarray, gamma: float = 2.,
                       alpha: float = 0.25) -> jnp.ndarray:
  """Elementwise focal loss; `targets` broadcast to `logits` (float, 0/1)."""
  x = logits.astype(jnp.float32)
  t = targets.astype(jnp.float32)
  bce = -(t * jax.nn.log_sigmoid(x) + (1. - t) * jax.nn.log_sigmoid(-x))
  one_minus_pt = t * jax.nn.sigmoid(-x) + (1. - t) * jax.nn.sigmoid(x)
  alpha_t = alpha * t + (1. - alpha) * (1. - t)
  return alpha_t * one_minus_pt ** gamma * bce


def l1_loss(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
  """Elementwise |pred - target| (mmdet `L1Loss`, on encoded deltas)."""
  return jnp.abs(pred.astype(jnp.float32) - target.astype(jnp.float32))
