"""Tasks: what a model's outputs mean (loss, predictions, default evaluators).

A task is constructed from `config.task` and provides:

- `normalizers(aux, batch) -> {name: scalar}`: what its loss divides by, as
  sums over the batch's examples that do not depend on the parameters (real
  examples, positive anchors, valid pixels). The train step sums them over the
  global batch (all micro-batches of a gradient-accumulation step);
- `loss(outputs, aux, batch, normalizers=None) -> (loss, metrics)`: with
  `normalizers` given, the loss and every metric are this batch's share of the
  step's and add up over micro-batches; None means this batch's own;
- `predict(outputs, aux, batch) -> dict` of arrays for the evaluators;
- `default_evaluators() -> {name: {"kind": ..., ...}}`.
"""
