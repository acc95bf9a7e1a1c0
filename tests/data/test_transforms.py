"""Preprocessing ops: exact values, determinism by rng, parse errors."""
import io

import numpy as np
import pytest
from PIL import Image

from vision_jax import data, models
from vision_jax.config import ConfigError
from vision_jax.data import transforms
from vision_jax.data.transforms import Preprocess


def _rng(seed=0):
  return np.random.default_rng(seed)


def _png(array: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue()


def test_registry_lookup_and_suggestion():
  ops = transforms.pp_ops()  # The generic ops of vision_jax.data and the tasks' own.
  assert ops.get("flip_lr") is transforms.flip_lr is data.PP_OPS.get("flip_lr")
  with pytest.raises(KeyError, match="Unknown preprocessing op 'flip'. Did you mean 'flip_lr'?"):
    ops.get("flip")
  assert "coco_objects" in ops and "coco_objects" not in data.PP_OPS
  names = models.MODELS.names()
  assert names == sorted(names) and {"pvt_large", "hyperbolic_resnet20", "retinanet"} <= set(names)


def test_decode_png_round_trip_and_channels():
  img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
  out = transforms.decode()({"image": _png(img)}, _rng())
  np.testing.assert_array_equal(out["image"], img)
  grey = transforms.decode()({"image": _png(img[..., 0])}, _rng())["image"]
  assert grey.shape == (4, 4, 1)
  rgb = transforms.decode(channels=3)({"image": _png(img[..., 0])}, _rng())["image"]
  assert rgb.shape == (4, 4, 3) and (rgb[..., 1] == img[..., 0]).all()


def test_normalize_values():
  out = transforms.normalize((0.5, 0.25), (0.5, 0.25))({"image": np.array([[[0, 255]]], np.uint8)},
                                                       _rng())
  np.testing.assert_allclose(out["image"], [[[-1.0, 3.0]]])


def test_onehot_with_smoothing():
  out = transforms.onehot(4, smoothing=0.2)({"label": 2}, _rng())["labels"]
  np.testing.assert_allclose(out, [0.05, 0.05, 0.85, 0.05])
  with pytest.raises(ValueError, match=r"label 7 outside \[0, 4\)"):
    transforms.onehot(4)({"label": 7}, _rng())


def test_random_crop_is_a_window_and_reproducible():
  img = np.arange(100, dtype=np.uint8).reshape(10, 10, 1)
  op = transforms.random_crop(4)
  a, b = op({"image": img}, _rng(3))["image"], op({"image": img}, _rng(3))["image"]
  np.testing.assert_array_equal(a, b)
  top, left = divmod(int(a[0, 0, 0]), 10)
  np.testing.assert_array_equal(a, img[top:top + 4, left:left + 4])
  corners = {int(op({"image": img}, _rng(s))["image"][0, 0, 0]) for s in range(50)}
  assert len(corners) > 10  # Positions vary with the rng.


def test_random_resized_crop_windows_respect_scale_and_ratio():
  for seed in range(200):
    top, left, ch, cw = transforms.crop_window(200, 300, (0.25, 0.5), (0.5, 2.0), _rng(seed))
    assert 0.25 * 0.97 <= ch * cw / (200 * 300) <= 0.5 * 1.03
    assert 0.5 * 0.97 <= cw / ch <= 2.0 * 1.03
    assert 0 <= top <= 200 - ch and 0 <= left <= 300 - cw
  # Impossible ratio (a 10:1 strip): the largest centred crop within the ratio.
  assert transforms.crop_window(10, 100, (1.0, 1.0), (0.5, 2.0), _rng(0)) == (0, 40, 10, 20)
  # The op cuts that window and resizes it.
  img = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (10, 1, 1))
  out = transforms.random_resized_crop((10, 20), scale=(1.0, 1.0), ratio=(0.5, 2.0))(
      {"image": img}, _rng(0))["image"]
  np.testing.assert_array_equal(out, img[:, 40:60])
  a = transforms.random_resized_crop(8)({"image": img}, _rng(5))["image"]
  b = transforms.random_resized_crop(8)({"image": img}, _rng(5))["image"]
  np.testing.assert_array_equal(a, b)
  assert a.shape == (8, 8, 1)


def test_resize_small_keeps_the_aspect_ratio():
  out = transforms.resize_small(64)({"image": np.zeros((100, 250, 3), np.uint8)}, _rng())["image"]
  assert out.shape == (64, 160, 3)
  out = transforms.resize_small(10)({"image": np.full((40, 30, 1), 9, np.uint8)}, _rng())["image"]
  assert out.shape == (13, 10, 1) and np.all(out == 9)


def test_pad_central_crop_flip_resize():
  img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
  padded = transforms.pad(1)({"image": img}, _rng())["image"]
  assert padded.shape == (6, 6, 1) and padded[0].sum() == 0 and padded[1, 1, 0] == 0
  np.testing.assert_array_equal(transforms.central_crop(2)({"image": img}, _rng())["image"],
                                img[1:3, 1:3])
  np.testing.assert_array_equal(transforms.flip_lr(p=1.0)({"image": img}, _rng())["image"],
                                img[:, ::-1])
  up = transforms.resize(8, method="nearest")({"image": img}, _rng())["image"]
  np.testing.assert_array_equal(up, img.repeat(2, 0).repeat(2, 1))


def test_preprocess_chain_and_keep():
  pp = Preprocess("decode|resize(8)|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')")
  ex = pp({"image": _png(np.full((4, 4), 255, np.uint8)), "label": 3, "id": 7}, _rng())
  assert sorted(ex) == ["image", "labels"]
  assert ex["image"].shape == (8, 8, 1) and np.allclose(ex["image"], 1.0)
  assert ex["labels"].argmax() == 3


@pytest.mark.parametrize("spec, message", [
    ("decode|resize(", "cannot parse 'resize('"),
    ("decode|resize(size=x)", "arguments must be literals"),
    ("decode|resize(8, 9, 10, 11)", "bad arguments for 'resize'"),
    ("decode|1+2", "is not an op name or call"),
])
def test_parse_errors(spec, message):
  with pytest.raises(ConfigError) as info:
    transforms.parse(spec, where="data.pp_train")
  assert str(info.value).startswith("data.pp_train: ") and message in str(info.value)
