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
