"""Models: backbone families (backbones/), necks, heads, and the models
assembled from them (retinanet.py, gcr.py) or whole (poincare_resnet.py).

`MODELS` is this package's name table: `config.model.name` and every
`<part>` field of an assembled model resolve here, lazily. Adding a model
touches its family file and this table only.
"""
from vision_jax.registry import Registry

_RESNET = "vision_jax.models.backbones.resnet"
_PVT = "vision_jax.models.backbones.pvt"
_POINCARE = "vision_jax.models.poincare_resnet"

MODELS = Registry("model", {
    **{n: f"{_RESNET}:{n}" for n in ("resnet18", "resnet34", "resnet50", "resnet101",
                                     "resnet18d", "resnet50d")},
    **{n: f"{_PVT}:{n}" for n in ("pvt_tiny", "pvt_small", "pvt_medium", "pvt_large")},
    **{f"{kind}_resnet{depth}": f"{_POINCARE}:{kind}_resnet{depth}"
       for kind in ("hyperbolic", "euclidean", "hybrid") for depth in (20, 32)},
    "retinanet": "vision_jax.models.retinanet:RetinaNet",
    "gcr": "vision_jax.models.gcr:GrassmannClassifier",
})

# Model family -> its reference-weight converter (`convert(state_dict, model)`,
# see vision_jax.convert); a model's family is the module it is defined in.
# Model family -> its default partition rules ((regex, spec), ...) for a mesh with a
# "model" axis (tensor parallelism); the trainer uses them when config.partition_rules
# is left at its default (`features.partition_rules`).
PARTITION_RULES = Registry("partition rules", {
    _RESNET: f"{_RESNET}:PARTITION_RULES",
    _PVT: f"{_PVT}:PARTITION_RULES",
})

WEIGHT_CONVERTERS = Registry("weights converter", {
    _RESNET: "vision_jax.models.backbones.resnet_weights:convert",
    _PVT: "vision_jax.models.backbones.pvt_weights:convert",
})
