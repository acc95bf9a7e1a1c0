"""The backbone contract: named feature levels, declared without running.

A backbone family takes `features_only`; then `__call__(images, train=...)`
returns ({level name: [B, H/stride, W/stride, channels]}, aux) in order of
increasing stride, and `feature_levels()` says, from the constructor's
arguments alone, each level's stride and channels (detectron2's
`Backbone.output_shape()`). Levels of stride 2^k are named "Ck" (C2 = 1/4).
Necks and heads choose their inputs from that declaration (by stride) and
declare their own outputs the same way ("Pk"), so a detector checks its
pyramid against the task's anchor strides before any compute.

An assembled model (detector, classifier, segmentor) names its parts in the
model table by pairs of fields: `<part>` (a model name) and `<part>_args`
(its constructor arguments, a dict); the part is built as the submodule
`<part>`, and `part(name)` returns it unbound, as the model builds it.
`submodels()` lists those pairs; config validation and `init_from` (a
weights file for `params/<part>`) use them.
"""
import dataclasses
from typing import Any, Mapping, Sequence

import flax.linen as nn


@dataclasses.dataclass(frozen=True)
class Level:
  """One feature map of a backbone or neck: its stride and channels."""
  stride: int
  channels: int


def level_name(stride: int, prefix: str = "C") -> str:
  """"C3" for stride 8: levels are named by log2 of their stride."""
  if stride < 1 or stride & (stride - 1):
    raise ValueError(f"Feature strides are powers of two, got {stride}.")
  return f"{prefix}{stride.bit_length() - 1}"


def select(levels: Mapping[str, Level], strides: Sequence[int], what: str) -> list[str]:
  """The names of `levels` with the given strides, in that order; a clear
  error naming what is available otherwise."""
  by_stride = {level.stride: name for name, level in levels.items()}
  missing = [s for s in strides if s not in by_stride]
  if missing:
    have = ", ".join(f"{n} (stride {l.stride}, {l.channels} ch)" for n, l in levels.items())
    raise ValueError(f"{what} needs feature strides {tuple(strides)}; the backbone has {have}.")
  return [by_stride[s] for s in strides]


def submodels(module_or_cls: Any) -> tuple[str, ...]:
  """The part names of an assembled model: fields `x` with a field `x_args`."""
  cls = module_or_cls if isinstance(module_or_cls, type) else type(module_or_cls)
  target = getattr(cls, "func", cls)  # functools.partial of a model class.
  if not dataclasses.is_dataclass(target):
    return ()
  names = {f.name for f in dataclasses.fields(target)}
  return tuple(n for n in sorted(names) if f"{n}_args" in names)


def build_part(model_name: str, args: dict | None, what: str, **fixed) -> nn.Module:
  """The model-table entry `model_name` built with `args` and the assembler's `fixed`
  arguments (e.g. features_only=True, name="backbone"); without a `name`, an
  unbound module of no parent (for declarations such as `feature_levels()`)."""
  from vision_jax import models  # Lazy: the table imports model modules by name.
  clash = sorted(set(args or {}) & (set(fixed) - {"dtype"}))
  if clash:
    raise ValueError(f"{what}_args may not set {clash}: the assembled model sets them.")
  if "name" not in fixed:
    fixed["parent"] = None
  return models.MODELS.get(model_name)(**{**fixed, **(args or {})})


class WithBackbone:
  """The part methods of an assembled model whose one part is `backbone` (a
  model-table name, with fields `backbone`, `backbone_args` and `dtype`),
  built with the arguments `BACKBONE_ARGS` ((name, value) pairs; default
  `features_only=True`)."""
  BACKBONE_ARGS = (("features_only", True),)

  def part(self, which: str, **fixed) -> nn.Module:
    """The unbound submodule `which` ("backbone") as this model builds it."""
    if which != "backbone":
      raise KeyError(f"{type(self).__name__} has no part {which!r} built from the model table.")
    return build_part(self.backbone, self.backbone_args, "backbone", **dict(self.BACKBONE_ARGS),
                      dtype=self.dtype, **fixed)

  def backbone_levels(self) -> dict[str, Level]:
    """The backbone's declared levels (no compute)."""
    return self.part("backbone").feature_levels()


def resolve(model: nn.Module, path: str) -> nn.Module:
  """The part at `path` below an assembled model ("backbone", or "" for the
  model itself), unbound; e.g. the model a weights file for params/backbone is for."""
  for name in filter(None, path.split("/")):
    if name not in submodels(model):
      raise KeyError(f"{type(model).__name__} has no part {name!r} built from the model table "
                     f"(parts: {list(submodels(model)) or 'none'}).")
    model = model.part(name)
  return model


def partition_rules(model: nn.Module) -> tuple:
  """The default partition rules of `model`'s family and of its parts'
  (first the parts', recursively), without a catch-all rule."""
  from vision_jax import models  # pylint: disable=import-outside-toplevel
  rules = []
  for name in submodels(model):
    rules += [r for r in partition_rules(model.part(name)) if r not in rules]
  family = type(model).__module__
  if family in models.PARTITION_RULES:
    rules += [r for r in models.PARTITION_RULES.get(family) if r not in rules]
  return tuple(rules)
