"""Reads checkpoint files into flat {name: numpy array} state dicts.

`.safetensors` is read with safetensors.numpy (no torch needed). `.pth`, `.pt`
and `.bin` are read with torch.load(weights_only=True), which refuses to run
pickled code: only tensors and plain containers are accepted. A top-level
"model" or "state_dict" entry (training or mmdetection checkpoints) is
unwrapped.
"""
import os
import pickle
from typing import Any, Mapping

import numpy as np

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
WRAPPER_KEYS = ("model", "state_dict")


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("Reading a PyTorch checkpoint (.pth/.pt/.bin) needs `torch`; install it "
                      "or save the weights as .safetensors.") from e
  return torch


def _unwrap(obj: Any) -> Mapping[str, Any]:
  while isinstance(obj, Mapping):
    inner = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
    if not inner:
      return obj
    obj = obj[inner[0]]
  raise TypeError(f"Expected a state dict (mapping of name -> tensor), got {type(obj).__name__}.")


def _to_numpy(torch, name: str, value: Any) -> np.ndarray:
  if not isinstance(value, torch.Tensor):
    raise TypeError(f"Entry {name!r} is a {type(value).__name__}, not a tensor.")
  value = value.detach().cpu()
  if value.dtype == torch.bfloat16:
    value = value.float()
  return value.numpy()


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Returns the flat state dict stored at `path` as numpy arrays."""
  path = os.fspath(path)
  if path.endswith(".safetensors"):
    from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
    return dict(load_file(path))
  if not path.endswith(TORCH_SUFFIXES):
    raise ValueError(f"Unknown checkpoint format {path!r}; expected .safetensors or one of "
                     f"{', '.join(TORCH_SUFFIXES)}.")
  torch = _torch()
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as e:
    raise ValueError(f"{path}: refused to unpickle objects other than tensors and plain "
                     f"containers (torch.load weights_only=True): {e}") from e
  return {str(k): _to_numpy(torch, k, v) for k, v in _unwrap(obj).items()}
