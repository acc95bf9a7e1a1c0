"""Segmentation logits back to the label's frame, as mmsegmentation 0.x does
at test time (`EncoderDecoder.whole_inference`, rescale=True): bilinear to
the network input's size, then bilinear to the original image size, both
with the head's `align_corners`.

Images of a batch share one padded canvas, so each example's input size
(`image/size`) and original size (`image/original_size`) are traced values;
the two resizes compose into one per-example pair of tap matrices
(`interpolate.dynamic_bilinear_matrix`), applied on a label canvas of fixed
shape whose pixels past the original size are left out by the evaluator.
"""
import jax
import jax.numpy as jnp

from vision_jax.layers import interpolate


def _axis_taps(n_logits: int, n_canvas: int, n_input, n_original, n_label: int,
               align_corners: bool) -> jax.Array:
  """[n_label, n_logits]: logits -> input canvas (static) -> original size (traced)."""
  to_input = jnp.asarray(interpolate.bilinear_matrix(n_logits, n_canvas, align_corners))
  to_original = interpolate.dynamic_bilinear_matrix(n_input, n_original, n_canvas, n_label,
                                                    align_corners)
  return jnp.dot(to_original, to_input, precision=jax.lax.Precision.HIGHEST)


def to_original_size(logits: jax.Array, canvas: tuple[int, int], input_size: jax.Array,
                     original_size: jax.Array, label_shape: tuple[int, int],
                     align_corners: bool = False) -> jax.Array:
  """logits [B, h, w, C] of inputs padded to `canvas` -> [B, *label_shape, C]:
  example b's input region input_size[b] resized to original_size[b] in the
  top-left corner (zero elsewhere)."""
  (h, w), (lh, lw) = logits.shape[1:3], label_shape

  def one(x, size_in, size_out):
    rows = _axis_taps(h, canvas[0], size_in[0], size_out[0], lh, align_corners)
    cols = _axis_taps(w, canvas[1], size_in[1], size_out[1], lw, align_corners)
    return jnp.einsum("oh,hwc,pw->opc", rows, x.astype(jnp.float32), cols,
                      precision=jax.lax.Precision.HIGHEST)

  return jax.vmap(one)(logits, input_size, original_size)


def argmax_at_original_size(logits: jax.Array, canvas: tuple[int, int], input_size: jax.Array,
                            original_size: jax.Array, label_shape: tuple[int, int],
                            align_corners: bool = False, rows_per_block: int = 64) -> jax.Array:
  """int32 [B, *label_shape]: the arg-max class of `to_original_size`'s
  logits, computed `rows_per_block` label rows at a time so the full-size
  logits ([B, H, W, C]) never exist at once."""
  (h, w), (lh, lw) = logits.shape[1:3], label_shape
  block = max(1, min(rows_per_block, lh))
  blocks = -(-lh // block)

  def one(x, size_in, size_out):
    rows = _axis_taps(h, canvas[0], size_in[0], size_out[0], blocks * block, align_corners)
    cols = _axis_taps(w, canvas[1], size_in[1], size_out[1], lw, align_corners)
    x = jnp.einsum("hwc,pw->hpc", x.astype(jnp.float32), cols,
                   precision=jax.lax.Precision.HIGHEST)

    def rows_block(taps):
      out = jnp.einsum("oh,hpc->opc", taps, x, precision=jax.lax.Precision.HIGHEST)
      return jnp.argmax(out, axis=-1).astype(jnp.int32)

    return jax.lax.map(rows_block, rows.reshape(blocks, block, h)).reshape(-1, lw)[:lh]

  return jax.vmap(one)(logits, input_size, original_size)
