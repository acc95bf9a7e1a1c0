"""Reference-weight files -> this library's variables.

Reading is shared (`torch_files`: .pth weights-only, .safetensors); each
layout lives with its model family (`models/backbones/<family>_weights.py`),
registered in `vision_jax.models.WEIGHT_CONVERTERS` under the module that
defines the family's model class, so a weights file converts for whatever
model the config builds: `load(path, model)`.
"""
import dataclasses
from typing import Any

from vision_jax.convert.torch_files import load_state_dict

__all__ = ["ConversionError", "Weights", "converter_for", "load", "load_state_dict"]


class ConversionError(ValueError):
  """The checkpoint does not match the target model."""


@dataclasses.dataclass(frozen=True)
class Weights:
  """Converted variables ({"params": ..., other collections such as
  "batch_stats"}) and the '/'-joined variable paths a model may leave unused
  (a classifier's head when the target is a backbone)."""
  variables: Any
  droppable: tuple[str, ...] = ()


def converter_for(model: Any):
  """The `convert(state_dict, model) -> Weights` of `model`'s family."""
  from vision_jax import models  # pylint: disable=import-outside-toplevel
  family = type(model).__module__
  if family not in models.WEIGHT_CONVERTERS:
    known = ", ".join(models.WEIGHT_CONVERTERS.names())
    raise ConversionError(f"No reference-weight converter for {type(model).__name__} "
                          f"({family}); families with converters: {known}.")
  return models.WEIGHT_CONVERTERS.get(family)


def load(path: str, model: Any) -> Weights:
  """The weights file at `path` converted for `model` (an unbound Flax module)."""
  return converter_for(model)(load_state_dict(path), model)
