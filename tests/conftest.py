"""Test setup: 8 fake CPU devices (set before JAX starts) and small configs."""
import os

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from tiny_config import tiny_config  # noqa: E402


@pytest.fixture
def make_config():
  return tiny_config
