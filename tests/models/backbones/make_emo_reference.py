r"""Writes data/emo2_1m_reference.npz: logits of the official EMOv2-1M on seeded weights.

  git clone https://github.com/zhangzjn/EMOv2 /tmp/EMOv2   # made at commit 582a96f
  python tests/models/backbones/make_emo_reference.py /tmp/EMOv2

The official `EMO2_1M_k5_hybrid` (model/lib_emo/emo2.py, imported from the
checkout given as argument; its basic_modules.py imports cv2, which it never
uses, so a stand-in module is installed when OpenCV is absent) is built, its
state dict's keys and shapes are listed, and every tensor is replaced by
`reference_weights(keys, shapes, WEIGHT_SEED)`: norm weights in [0.5, 1.5],
norm biases and running means ~ N(0, 0.2), running variances in [0.5, 2],
LayerScale gammas in [0.3, 0.7] (so the attention branches count), conv and
linear weights ~ N(0, 1 / fan_in), biases ~ N(0, 0.2). The model then runs in
float64, eval mode, on `reference_images` (seeded N(0, 1), 2 images) at each
of SIZES; 160x192 gives stage-3/4 maps of 10x12 and 5x6, which the 7x7
windows must pad. Stored (about 20 KB, no weights): the keys and shapes, the
seeds, the logits per size and, at the last size, every stage output's
per-channel spatial mean. Made with torch 2.14.1, timm 1.0.31, einops 0.8.2.
tests/models/backbones/test_emo_weights.py rebuilds the same weights from the
stored keys and shapes, converts them and compares.
"""
import os
import sys
import types

import numpy as np

WEIGHT_SEED = 0
IMAGE_SEED = 1
SIZES = ((224, 224), (160, 192))
OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data",
                      "emo2_1m_reference.npz")


def reference_weights(keys, shapes, seed: int = WEIGHT_SEED) -> dict[str, np.ndarray]:
  """Seeded float32 tensors (int64 zeros for num_batches_tracked) for the given
  keys and shapes, drawn in sorted key order from one generator."""
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in sorted(zip(keys, (tuple(s) for s in shapes))):
    if key.endswith("num_batches_tracked"):
      out[key] = np.zeros(shape, np.int64)
      continue
    if key.endswith("running_var"):
      value = rng.uniform(0.5, 2.0, shape)
    elif key.endswith("running_mean") or key.endswith("norm.bias"):
      value = rng.normal(0.0, 0.2, shape)
    elif key.endswith("norm.weight"):
      value = rng.uniform(0.5, 1.5, shape)
    elif key.endswith("ls.gamma"):
      value = rng.uniform(0.3, 0.7, shape)
    elif key.endswith(".weight"):
      value = rng.normal(0.0, 1.0, shape) / np.sqrt(np.prod(shape[1:]))
    elif key.endswith(".bias"):
      value = rng.normal(0.0, 0.2, shape)
    else:
      raise ValueError(f"No rule for {key}.")
    out[key] = value.astype(np.float32)
  return out


def reference_images(size, seed: int = IMAGE_SEED) -> np.ndarray:
  """[2, 3, H, W] float32 N(0, 1) images."""
  return np.random.default_rng(seed).normal(size=(2, 3, *size)).astype(np.float32)


def encode_shapes(shapes) -> np.ndarray:
  return np.array([",".join(str(d) for d in s) for s in shapes])


def decode_shapes(encoded) -> list[tuple[int, ...]]:
  return [tuple(int(d) for d in str(s).split(",") if d) for s in encoded]


def main(checkout: str) -> None:
  import torch  # pylint: disable=import-outside-toplevel
  try:
    import cv2  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    sys.modules["cv2"] = types.ModuleType("cv2")
  sys.path.insert(0, os.path.abspath(checkout))
  from model.lib_emo import emo2  # pylint: disable=import-outside-toplevel

  net = emo2.EMO2_1M_k5_hybrid()
  state = net.state_dict()
  keys, shapes = list(state), [tuple(v.shape) for v in state.values()]
  weights = reference_weights(keys, shapes)
  net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()}, strict=True)
  net = net.double().eval()
  record = {"keys": np.array(keys), "shapes": encode_shapes(shapes),
            "weight_seed": np.int64(WEIGHT_SEED), "image_seed": np.int64(IMAGE_SEED),
            "sizes": np.array(SIZES, np.int64)}
  with torch.no_grad():
    for size in SIZES:
      x = torch.from_numpy(reference_images(size)).double()
      record[f"logits_{size[0]}x{size[1]}"] = net(x)["out"].numpy().astype(np.float32)
    last = SIZES[-1]
    x = torch.from_numpy(reference_images(last)).double()
    for blk in net.stage0:
      x = blk(x)
    for s in range(1, 5):
      for blk in getattr(net, f"stage{s}"):
        x = blk(x)
      record[f"stage{s}_mean_{last[0]}x{last[1]}"] = x.mean((2, 3)).numpy().astype(np.float32)
  os.makedirs(os.path.dirname(OUTPUT), exist_ok=True)
  np.savez_compressed(OUTPUT, **record)
  print(f"{OUTPUT}: {len(keys)} keys, {os.path.getsize(OUTPUT)} bytes")


if __name__ == "__main__":
  if len(sys.argv) != 2:
    sys.exit(f"usage: {sys.argv[0]} /path/to/EMOv2-checkout")
  main(sys.argv[1])
