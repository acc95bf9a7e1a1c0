"""Detection pictures: exactly the outline pixels change, colours per class."""
import numpy as np

from vision_jax.tasks.detection import pictures

NAMES = ["cat", "dog", "kite"]


def _outline(shape, x1, y1, x2, y2, width):
  """Mask of the pixels of box [x1, x2) x [y1, y2) within `width` of its border."""
  ys, xs = np.mgrid[:shape[0], :shape[1]]
  inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
  core = (xs >= x1 + width) & (xs < x2 - width) & (ys >= y1 + width) & (ys < y2 - width)
  return inside & ~core


def test_a_box_changes_exactly_its_outline():
  image = np.full((60, 80, 3), 128, np.uint8)
  out = pictures.draw_detections(image, np.asarray([[10.0, 20.0, 50.0, 45.0]]), np.asarray([1]),
                                 np.asarray([0.9]), NAMES, line_width=3, labels=False)
  assert out.shape == image.shape and out.dtype == np.uint8
  changed = (out != image).any(-1)
  np.testing.assert_array_equal(changed, _outline(image.shape, 10, 20, 50, 45, 3))
  assert tuple(out[20, 10]) == pictures.class_colour(1) == tuple(out[44, 49])
  assert (image == 128).all()  # The input is not drawn on.


def test_labels_sit_on_a_tab_of_the_class_colour_outside_the_box():
  image = np.zeros((100, 120, 3), np.uint8)
  box = np.asarray([[30.0, 40.0, 90.0, 95.0]])
  out = pictures.draw_detections(image, box, np.asarray([2]), np.asarray([0.75]), NAMES, line_width=2)
  outline = _outline(image.shape, 30, 40, 90, 95, 2)
  assert (out[outline] == pictures.class_colour(2)).all()
  assert (out[50:93, 32:88] == 0).all()  # Inside the box: untouched.
  tab = out[:40, 30:90]  # Above the box: the label's tab with text in a contrasting ink.
  colours = {tuple(p) for p in tab.reshape(-1, 3)}
  assert pictures.class_colour(2) in colours and len(colours) > 2
  assert (out[:40, :29] == 0).all()  # Nothing left of the tab.


def test_a_label_goes_inside_a_box_at_the_top_edge():
  image = np.zeros((50, 200, 3), np.uint8)
  out = pictures.draw_detections(image, np.asarray([[5.0, 0.0, 150.0, 40.0]]), np.asarray([0]),
                                 np.asarray([1.0]), NAMES, line_width=2)
  assert out.shape == image.shape
  assert (out[10, 10:30] != 0).any()  # The tab hangs inside, under the top edge.


def test_a_label_at_the_right_edge_stays_in_the_image():
  image = np.zeros((60, 100, 3), np.uint8)
  out = pictures.draw_detections(image, np.asarray([[90.0, 30.0, 100.0, 50.0]]), np.asarray([0]),
                                 np.asarray([0.5]), NAMES, line_width=1)
  tab = (out[:30] == pictures.class_colour(0)).all(-1)
  assert tab[:, :90].any() and tab[:, 99].any()  # Shifted left, still reaching the edge.


def test_each_class_has_its_own_colour():
  colours = [pictures.class_colour(i) for i in range(91)]
  assert len(set(colours)) == 91
  image = np.full((40, 40, 3), 255, np.uint8)
  box = np.asarray([[5.0, 5.0, 35.0, 35.0]])
  drawn = [pictures.draw_detections(image, box, np.asarray([c]), np.asarray([1.0]), NAMES,
                                    labels=False, line_width=2)[20, 5] for c in range(3)]
  assert len({tuple(d) for d in drawn}) == 3


def test_ground_truth_is_dashed_and_thin_padding_and_low_classes_are_skipped():
  image = np.full((40, 50, 3), 100, np.uint8)
  out = pictures.draw_detections(
      image, np.asarray([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 9.0, 9.0]]), np.asarray([-1, -1]),
      np.asarray([0.0, 0.0]), NAMES, gt_boxes=np.asarray([[10.0, 8.0, 40.0, 30.0]]))
  changed = (out != image).any(-1)
  np.testing.assert_array_equal(changed, _outline(image.shape, 10, 8, 40, 30, 1))
  edge = {tuple(p) for p in out[8, 10:40]}
  assert edge == {(255, 255, 255), (0, 0, 0)}


def test_grey_images_come_back_rgb():
  out = pictures.draw_detections(np.zeros((20, 30, 1), np.uint8), np.asarray([[2.0, 2, 12, 12]]),
                                 np.asarray([0]), np.asarray([0.5]), NAMES)
  assert out.shape == (20, 30, 3)
