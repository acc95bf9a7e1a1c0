"""Name -> component lookup, imported lazily.

Every component a config names by string (models, tasks, evaluators, datasets,
preprocessing ops) resolves through one of the read-only tables below, so a
config can be validated without importing heavy modules, and an unknown name
fails with the nearest valid one.
"""
import difflib
import importlib
import types
from typing import Any, Mapping


def nearest(name: str, choices) -> str:
  """Returns ' Did you mean 'x'?' for the closest choice, or ''."""
  close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
  return f" Did you mean {close[0]!r}?" if close else ""


class Registry:
  """A read-only table of name -> "module:attribute" resolved on lookup."""

  def __init__(self, kind: str, table: Mapping[str, str]):
    self.kind = kind
    self._table = types.MappingProxyType(dict(table))

  def names(self) -> list[str]:
    return sorted(self._table)

  def __contains__(self, name: str) -> bool:
    return name in self._table

  def get(self, name: str) -> Any:
    if name not in self._table:
      raise KeyError(
          f"Unknown {self.kind} {name!r}.{nearest(name, self._table)} "
          f"Known {self.kind}s: {', '.join(self.names())}.")
    module_name, attr = self._table[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


MODELS = Registry("model", {
    "resnet18": "vision_jax.models.resnet:resnet18",
    "resnet34": "vision_jax.models.resnet:resnet34",
    "resnet50": "vision_jax.models.resnet:resnet50",
    "resnet101": "vision_jax.models.resnet:resnet101",
    "resnet18d": "vision_jax.models.resnet:resnet18d",
    "resnet50d": "vision_jax.models.resnet:resnet50d",
    "pvt_tiny": "vision_jax.models.pvt:pvt_tiny",
    "pvt_small": "vision_jax.models.pvt:pvt_small",
    "pvt_medium": "vision_jax.models.pvt:pvt_medium",
    "pvt_large": "vision_jax.models.pvt:pvt_large",
    "retinanet": "vision_jax.models.retinanet:RetinaNet",
    "hyperbolic_resnet20": "vision_jax.models.poincare_resnet:hyperbolic_resnet20",
    "hyperbolic_resnet32": "vision_jax.models.poincare_resnet:hyperbolic_resnet32",
    "euclidean_resnet20": "vision_jax.models.poincare_resnet:euclidean_resnet20",
    "euclidean_resnet32": "vision_jax.models.poincare_resnet:euclidean_resnet32",
    "hybrid_resnet20": "vision_jax.models.poincare_resnet:hybrid_resnet20",
    "hybrid_resnet32": "vision_jax.models.poincare_resnet:hybrid_resnet32",
    "gcr": "vision_jax.models.gcr:GrassmannClassifier",
})

TASKS = Registry("task", {
    "classification": "vision_jax.tasks.classification:ClassificationTask",
    "detection": "vision_jax.tasks.detection:DetectionTask",
})

EVALUATORS = Registry("evaluator", {
    "classification": "vision_jax.evaluators.classification:ClassificationEvaluator",
    "coco": "vision_jax.evaluators.coco:CocoEvaluator",
    "linear_transfer": "vision_jax.evaluators.linear_transfer:LinearTransferEvaluator",
})

OPTIMIZERS = Registry("optimizer", {
    "sgd": "vision_jax.optim.builder:sgd",
    "adam": "vision_jax.optim.builder:adam",
    "adamw": "vision_jax.optim.builder:adamw",
    "lamb": "vision_jax.optim.builder:lamb",
})

SCHEDULES = Registry("schedule", {
    "constant": "vision_jax.optim.schedules:constant",
    "cosine": "vision_jax.optim.schedules:cosine",
    "step": "vision_jax.optim.schedules:step",
})

PP_OPS = Registry("preprocessing op", {
    "decode": "vision_jax.data.transforms:decode",
    "resize": "vision_jax.data.transforms:resize",
    "resize_small": "vision_jax.data.transforms:resize_small",
    "random_crop": "vision_jax.data.transforms:random_crop",
    "central_crop": "vision_jax.data.transforms:central_crop",
    "random_resized_crop": "vision_jax.data.transforms:random_resized_crop",
    "pad": "vision_jax.data.transforms:pad",
    "flip_lr": "vision_jax.data.transforms:flip_lr",
    "normalize": "vision_jax.data.transforms:normalize",
    "onehot": "vision_jax.data.transforms:onehot",
    "keep": "vision_jax.data.transforms:keep",
    "coco_objects": "vision_jax.data.detection_transforms:coco_objects",
    "resize_keep_ratio": "vision_jax.data.detection_transforms:resize_keep_ratio",
    "flip_lr_boxes": "vision_jax.data.detection_transforms:flip_lr_boxes",
    "pad_to": "vision_jax.data.detection_transforms:pad_to",
    "pad_boxes": "vision_jax.data.detection_transforms:pad_boxes",
})

# Datasets built from files shipped or generated inside the package; any other
# name is looked up in TFDS's own catalogue.
EMBEDDED_DATASETS = Registry("embedded dataset", {
    "sklearn_digits": "vision_jax.data.digits:SklearnDigits",
    "shapes_demo": "vision_jax.data.shapes:ShapesDemo",
})
