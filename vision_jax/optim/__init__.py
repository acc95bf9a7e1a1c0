"""Optimizers from config: parameter-path groups of optimizer specs, a list of
gradient/parameter transforms, schedules, Riemannian SGD. The name tables:"""
from vision_jax.registry import Registry

_B = "vision_jax.optim.builder"

OPTIMIZERS = Registry("optimizer", {
    "sgd": f"{_B}:sgd",
    "adam": f"{_B}:adam",
    "adamw": f"{_B}:adamw",
    "lamb": f"{_B}:lamb",
    "rmsprop": f"{_B}:rmsprop",
    "grassmann_sgd": "vision_jax.optim.riemannian:grassmann_sgd",
    "frozen": f"{_B}:frozen",
})

SCHEDULES = Registry("schedule", {
    "constant": "vision_jax.optim.schedules:constant",
    "cosine": "vision_jax.optim.schedules:cosine",
    "step": "vision_jax.optim.schedules:step",
    "poly": "vision_jax.optim.schedules:poly",
})

# Extra transforms applied in order after the optimizers (config.optimizer.transforms).
TRANSFORMS = Registry("optimizer transform", {
    "clip_by_global_norm": "vision_jax.optim.transforms:clip_by_global_norm",
    "zero_nans": "vision_jax.optim.transforms:zero_nans",
    "sparsity": "vision_jax.sparsity.transform:sparsity",
})
