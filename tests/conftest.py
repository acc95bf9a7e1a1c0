"""Test setup: 8 fake CPU devices, set before JAX starts."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Runs in tests compile the same programs again and again: cache them on disk.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(os.path.dirname(__file__), "..", ".pytest_cache", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

# Tests import shared fixtures of other test files by module name (tiny_config,
# test_train, ...) and experiment files as `configs.<family>.<file>`: the
# repository root and every test folder are importable.
import sys  # pylint: disable=wrong-import-position

_TESTS = os.path.dirname(os.path.abspath(__file__))
for _root, _dirs, _ in os.walk(_TESTS):
  _dirs[:] = sorted(d for d in _dirs if not d.startswith((".", "_")))
  sys.path.insert(0, _root)
sys.path.insert(0, os.path.dirname(_TESTS))


# A small mmseg-layout folder: 5 val images; 6 train images, of which one label
# map has the wrong size, one is not a PNG, and one image has none.
import numpy as np  # pylint: disable=wrong-import-position
import pytest  # pylint: disable=wrong-import-position
from PIL import Image  # pylint: disable=wrong-import-position

CLASSES = 4


def _write(root, split, index, h, w, rng, label_size=None, garbage=False, label=True):
  for sub in ("images", "annotations"):
    os.makedirs(os.path.join(root, sub, split), exist_ok=True)
  Image.fromarray(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).save(
      os.path.join(root, "images", split, f"{index:03d}.jpg"))
  path = os.path.join(root, "annotations", split, f"{index:03d}.png")
  if garbage:
    with open(path, "wb") as f:
      f.write(b"not a png")
  elif label:
    lh, lw = label_size or (h, w)
    values = rng.integers(0, CLASSES, (lh, lw)).astype(np.uint8)
    values[rng.random((lh, lw)) < 0.1] = 255
    Image.fromarray(values, mode="L").save(path)


@pytest.fixture(scope="session")
def seg_folder(tmp_path_factory):
  """(root, number of classes)."""
  root = str(tmp_path_factory.mktemp("seg_folder"))
  rng = np.random.default_rng(0)
  for i in range(5):
    _write(root, "val", i, int(rng.integers(30, 64)), int(rng.integers(30, 64)), rng)
  for i in range(6):
    _write(root, "train", i, 48, 40, rng, label_size=(20, 20) if i == 1 else None,
           garbage=i == 3, label=i != 5)
  return root, CLASSES
