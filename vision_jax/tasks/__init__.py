"""Tasks: what a model's outputs mean (loss, predictions, default evaluators)."""
