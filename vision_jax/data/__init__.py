"""Data: sources (TFDS names, COCO folders, embedded datasets), generic pp ops
and the Grain pipelines. Task-specific pp ops live with their task
(`vision_jax.tasks.PP_OPS`)."""
from vision_jax.registry import Registry

_T = "vision_jax.data.transforms"

PP_OPS = Registry("preprocessing op", {
    name: f"{_T}:{name}" for name in (
        "decode", "resize", "resize_small", "random_crop", "central_crop",
        "random_resized_crop", "pad", "flip_lr", "normalize", "onehot", "keep")})

# Datasets built from files shipped or generated inside the package; any other
# name is looked up in TFDS's own catalogue.
EMBEDDED_DATASETS = Registry("embedded dataset", {
    "sklearn_digits": "vision_jax.data.digits:SklearnDigits",
    "shapes_demo": "vision_jax.data.shapes:ShapesDemo",
    "shapes_seg_demo": "vision_jax.data.shapes_seg:ShapesSegDemo",
    "lanes_demo": "vision_jax.data.lanes_demo:LanesDemo",
})
