"""configs/connnet/saliency.py: grey masks binarised at the benchmarks'
threshold, the DUTS variant's folder layout named when the data is missing,
and a short end-to-end demo run (shapes_seg_demo folder -> ConnNet ->
MAE / max F)."""
import io

import numpy as np
import pytest
from PIL import Image

from brief_run import brief_run
from vision_jax import config as config_lib, train
from vision_jax.batch import IMAGE, ORIGINAL_SIZE, SEGMENTATION
from vision_jax.data import shapes_seg, sources
from vision_jax.tasks.saliency.transforms import saliency_mask
from configs.connnet import saliency


def _png(mask):
  buffer = io.BytesIO()
  Image.fromarray(mask.astype(np.uint8), mode="L").save(buffer, format="PNG")
  return buffer.getvalue()


def test_grey_masks_are_binarised_at_the_threshold():
  mask = np.array([[0, 1, 127], [128, 200, 255]], np.uint8)
  ex = {IMAGE: np.zeros((2, 3, 3), np.uint8), "mask": _png(mask)}
  out = saliency_mask("mask")(ex, None)
  assert "mask" not in out and out[SEGMENTATION].dtype == np.uint8
  np.testing.assert_array_equal(out[SEGMENTATION], [[0, 0, 0], [1, 1, 1]])
  np.testing.assert_array_equal(out[ORIGINAL_SIZE], [2, 3])
  np.testing.assert_array_equal(saliency_mask("mask", threshold=1)(ex, None)[SEGMENTATION],
                                [[0, 1, 1], [1, 1, 1]])
  with pytest.raises(ValueError, match=r"size \(2, 3\) for an image of size \(4, 3\)"):
    saliency_mask("mask")({IMAGE: np.zeros((4, 3, 3), np.uint8), "mask": _png(mask)}, None)
  with pytest.raises(ValueError, match="threshold must be in 1..255, got 0"):
    saliency_mask(threshold=0)


def test_duts_variant_names_the_folder_layout_and_bad_variants_fail():
  c = saliency.get_config("variant=duts")
  config_lib.validate(c)
  assert (c.data.train_split, c.data.eval_split, c.model.backbone) == (
      "DUTS-TR", "DUTS-TE", "resnet50")
  assert "threshold=128" in c.data.pp_train and "seg_resize" not in c.data.pp_eval
  c.data.data_dir = "/nonexistent/DUTS"
  with pytest.raises(sources.DataMissingError, match="images/DUTS-TR/ and PNG label maps"):
    train.setup(c)
  with pytest.raises(config_lib.ConfigError, match="variant='ecssd'"):
    saliency.get_config("variant=ecssd")


@pytest.mark.slow
def test_demo_trains_and_scores_mae_and_max_f(tmp_path, monkeypatch):
  monkeypatch.setattr(shapes_seg, "SPLITS", {"train": 16, "val": 4})
  c = saliency.get_config()
  c.data.eval_batch_size = 4
  c.model.backbone_args = {"width": 4}
  c.model.decoder_features = c.model.stream_features = c.model.head_features = 8
  result, rows, _ = brief_run(c, tmp_path, total_steps=20, log_every_steps=10)
  assert [r["step"] for r in rows] == [10, 20]
  assert rows[-1]["train/loss"] < rows[0]["train/loss"], rows
  assert 0 < result["saliency/mae"] < 1 and 0 < result["saliency/max_f"] <= 1
