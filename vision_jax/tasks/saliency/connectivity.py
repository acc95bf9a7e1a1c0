"""The 8-neighbour connectivity cube of ConnNet (Kampffmeyer, Dong, Liang,
Jenssen, "ConnNet: A Long-Range Relation-Aware Pixel-Connectivity Network
for Salient Segmentation", IEEE TIP 2019, arXiv:1804.07836, Sec. III-A).

Target. For a binary saliency mask G [B, H, W] and the k-th offset o_k of
`OFFSETS` (square connectivity, the 3x3 neighbourhood without its centre):

  C_k(p) = G(p) * G(p + o_k),   C_k(p) = 0 where p + o_k lies outside the image,

so channel k is 1 exactly where p and its k-th neighbour are both salient.
Channels k and 7 - k are opposite directions: C_k(p) = C_{7-k}(p + o_k).

Ignore label (255). A pixel labelled `ignore` is neither salient nor
background. An entry C_k(p) is still known when either of its two pixels is
known background (the product is 0 whatever the other is); it is ignored
(weight 0) only when it is undetermined: one pixel is ignored and the other
is salient or ignored. Out-of-image neighbours count as known background.

Inference (aggregation back to a saliency map). ConnNet turns the predicted
connectivity probabilities P_k(p) = sigmoid(logit_k(p)) into the saliency
probability of p by averaging over the 8 directions,

  S(p) = (1 / 8) * sum_k P_k(p)                                     ("mean"),

which on the target cube gives the share of p's neighbours that are salient
with p (1 inside an object, between 0 and 1 on its border, 0 outside: the
target thresholded at S > 0 is G, except isolated salient pixels). "max"
(S(p) = max_k P_k(p), the global map of BiconNet, Yang et al. 2021) gives G
itself on the target cube, again except isolated salient pixels.
"""
import jax
import jax.numpy as jnp

# (dy, dx) of neighbour k of pixel p = (y, x): row-major over the 3x3 window
# without its centre; OFFSETS[7 - k] == -OFFSETS[k].
OFFSETS = ((-1, -1), (-1, 0), (-1, 1),
           (0, -1), (0, 1),
           (1, -1), (1, 0), (1, 1))
NUM_NEIGHBOURS = len(OFFSETS)
IGNORE = 255  # The dense-label ignore value (vision_jax.batch.SEGMENTATION).
AGGREGATIONS = ("mean", "max")


def neighbour(x: jax.Array, offset: tuple[int, int], fill) -> jax.Array:
  """[B, H, W] -> [B, H, W]: out(p) = x(p + offset), `fill` outside the image."""
  dy, dx = offset
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
  h, w = x.shape[1:3]
  return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def salient_and_known(labels: jax.Array, ignore: int = IGNORE) -> tuple[jax.Array, jax.Array]:
  """(salient, known) bool [B, H, W] of dense labels: known = label != ignore,
  salient = known and label != 0 (any non-zero class is salient)."""
  labels = jnp.asarray(labels)
  known = labels != ignore
  return known & (labels != 0), known


def connectivity_targets(labels: jax.Array, ignore: int = IGNORE) -> tuple[jax.Array, jax.Array]:
  """(targets, weights), float32 [B, H, W, 8], of labels [B, H, W] (0 =
  background, other = salient, `ignore` = unknown): targets C_k(p) as in the
  module docstring; weights 1 where the entry is determined, 0 where not."""
  salient, known = salient_and_known(labels, ignore)
  background = known & ~salient
  targets, weights = [], []
  for offset in OFFSETS:
    n_salient = neighbour(salient, offset, False)
    n_known = neighbour(known, offset, True)
    n_background = n_known & ~n_salient
    targets.append(salient & n_salient)
    weights.append((known & n_known) | background | n_background)
  return (jnp.stack(targets, -1).astype(jnp.float32),
          jnp.stack(weights, -1).astype(jnp.float32))


def aggregate(probabilities: jax.Array, mode: str = "mean") -> jax.Array:
  """[B, H, W, 8] connectivity probabilities -> [B, H, W] saliency: their mean
  over the 8 directions (ConnNet) or their max ("max")."""
  if mode not in AGGREGATIONS:
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {mode!r}.")
  if probabilities.shape[-1] != NUM_NEIGHBOURS:
    raise ValueError(f"Expected {NUM_NEIGHBOURS} connectivity channels, got "
                     f"{probabilities.shape[-1]}.")
  if mode == "max":
    return jnp.max(probabilities, axis=-1)
  return jnp.mean(probabilities, axis=-1)
