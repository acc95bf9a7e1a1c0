"""Pictures of any evaluator: grids of images, one per group, in natural order."""
import numpy as np
import pytest

from vision_jax.evaluators import pictures as grid_pictures


def test_tile_places_images_in_a_grid():
  images = [np.full((h, w, 3), v, np.uint8) for v, (h, w) in enumerate([(10, 20), (30, 15), (5, 5)], 1)]
  grid = grid_pictures.tile(images, columns=2, gap=4)
  assert grid.shape == (30 + 4 + 30, 20 + 4 + 20, 3) and grid.dtype == np.uint8
  assert (grid[:10, :20] == 1).all() and (grid[:30, 24:39] == 2).all()
  assert (grid[34:39, :5] == 3).all() and (grid[10:30, :20] == 0).all()
  assert grid_pictures.tile(images[:1], columns=4).shape == (10, 20, 3)
  with pytest.raises(ValueError):
    grid_pictures.tile([], columns=2)


def test_tile_groups_makes_one_grid_per_group():
  red = np.zeros((4, 6, 3), np.uint8)
  red[..., 0] = 255
  blue = np.zeros((2, 3, 3), np.uint8)
  blue[..., 2] = 255
  grids = grid_pictures.tile_groups({"detections/10": blue, "detections/9": red, "other/1": red},
                               columns=4)
  assert sorted(grids) == ["detections", "other"]
  grid = grids["detections"]
  assert grid.shape == (4, 6 + 4 + 6, 3)  # Two cells of the largest size, 4 px apart.
  np.testing.assert_array_equal(grid[:4, :6], red)  # 9 before 10: natural order.
  np.testing.assert_array_equal(grid[:2, 10:13], blue)
  np.testing.assert_array_equal(grids["other"], red)
