"""Bilinear resizing against torch.nn.functional.interpolate, and the traced
tap matrices against the static ones."""
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax.layers import interpolate


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("src, dst", [((5, 7), (20, 28)), ((8, 8), (16, 16)), ((9, 6), (4, 5)),
                                      ((16, 12), (64, 47))])
def test_resize_bilinear_matches_torch(src, dst, align_corners):
  import torch  # pylint: disable=import-outside-toplevel
  x = np.random.default_rng(0).normal(size=(2, *src, 3)).astype(np.float32)
  ours = np.asarray(interpolate.resize_bilinear(jnp.asarray(x), dst, align_corners))
  ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=dst,
                                        mode="bilinear", align_corners=align_corners)
  np.testing.assert_allclose(ours, ref.permute(0, 2, 3, 1).numpy(), atol=2e-6, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
def test_dynamic_taps_equal_the_static_ones_inside_a_canvas(align_corners):
  for n_in, n_out in [(5, 12), (12, 5), (7, 7), (1, 4)]:
    dynamic = np.asarray(interpolate.dynamic_bilinear_matrix(
        jnp.int32(n_in), jnp.int32(n_out), 16, 20, align_corners))
    expected = np.zeros((20, 16), np.float32)
    expected[:n_out, :n_in] = interpolate.bilinear_matrix(n_in, n_out, align_corners)
    np.testing.assert_allclose(dynamic, expected, atol=1e-6)
