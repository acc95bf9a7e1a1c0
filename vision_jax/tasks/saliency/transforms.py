"""Salient-object pp op: a ground-truth mask (or a class map) -> the binary
"segmentation" the connectivity task and the saliency evaluator read.

Salient-object benchmarks (DUTS, ECSSD, DUT-OMRON, HKU-IS, PASCAL-S) ship
8-bit grey masks, 0 background and 255 salient with anti-aliased edges; the
evaluators binarise them at 128 (Borji et al., TIP 2015). With `threshold=1`
any non-zero class of a segmentation map is salient (the embedded demo's
objects on `shapes_seg_demo`). The geometric ops of
`vision_jax.tasks.segmentation.transforms` then move image and mask together;
their padding (255) is ignored by the task and the evaluator.
"""
import numpy as np

from vision_jax.tasks.segmentation.transforms import image_label, with_label


def saliency_mask(key: str = "segmentation", threshold: int = 128):
  """Mask `key` -> "segmentation" uint8 [H, W], 1 where the mask is >= `threshold`
  (0 elsewhere), and "image/original_size"; an unreadable mask or one whose
  size differs from the image's raises, so the record is skipped and counted."""
  if not 1 <= int(threshold) <= 255:
    raise ValueError(f"saliency_mask threshold must be in 1..255, got {threshold}.")

  def fn(ex, rng):
    del rng
    salient = image_label(ex, key) >= int(threshold)
    return with_label({k: v for k, v in ex.items() if k != key}, salient.astype(np.uint8))
  return fn
