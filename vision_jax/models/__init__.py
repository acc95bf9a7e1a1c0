"""Models: backbone families (backbones/), necks, heads, and the models
assembled from them (retinanet.py, gcr.py) or whole (poincare_resnet.py).

`MODELS` is this package's name table: `config.model.name` and every
`<part>` field of an assembled model resolve here, lazily. Adding a model
touches its family file and this table only.
"""
from vision_jax.models import ffnet_names
from vision_jax.registry import Registry

_RESNET = "vision_jax.models.backbones.resnet"
_PVT = "vision_jax.models.backbones.pvt"
_POINCARE = "vision_jax.models.poincare_resnet"
_INCEPTION = "vision_jax.models.backbones.inception"
_VOVNET = "vision_jax.models.backbones.vovnet"
_EMO = "vision_jax.models.backbones.emo"
_TERMINATOR = "vision_jax.models.terminator"
_FFNET, _FFNET_BACKBONES = "vision_jax.models.ffnet", "vision_jax.models.backbones.ffnet"

MODELS = Registry("model", {
    **{n: f"{_RESNET}:{n}" for n in ("resnet18", "resnet34", "resnet50", "resnet101",
                                     "resnet18d", "resnet50d")},
    **{n: f"{_PVT}:{n}" for n in ("pvt_tiny", "pvt_small", "pvt_medium", "pvt_large")},
    **{n: f"{_INCEPTION}:{n}" for n in ("inception_v4", "inception_resnet_v2")},
    **{n: f"{_VOVNET}:{n}" for n in ("vovnet39a", "vovnet57a", "ese_vovnet19b_dw",
                                     "ese_vovnet39b", "ese_vovnet57b")},
    **{n: f"{_EMO}:{n}" for n in ("emo2_1m", "emo2_2m", "emo2_5m", "emo2_20m", "emo2_50m")},
    "terminator": f"{_TERMINATOR}:terminator",
    **{f"{kind}_resnet{depth}": f"{_POINCARE}:{kind}_resnet{depth}"
       for kind in ("hyperbolic", "euclidean", "hybrid") for depth in (20, 32)},
    "retinanet": "vision_jax.models.retinanet:RetinaNet",
    "catnet": "vision_jax.models.retinanet:catnet",
    "gcr": "vision_jax.models.gcr:GrassmannClassifier",
    "semantic_fpn": "vision_jax.models.semantic_fpn:SemanticFPN",
    "scnn_vgg16": "vision_jax.models.scnn:scnn_vgg16",
    "connnet": "vision_jax.models.connnet:ConnNet",
    "ffnet": f"{_FFNET}:FFNet",
    **{n: f"{_FFNET}:{n}" for n in ffnet_names.VARIANTS},
    **{n: f"{_FFNET_BACKBONES}:{n}" for n in ffnet_names.BACKBONES},
})

# Model family (the module a model is defined in) -> its default partition rules ((regex, spec), ...) for a mesh with a
# "model" axis (tensor parallelism); the trainer uses them when config.partition_rules
# is left at its default (`features.partition_rules`).
PARTITION_RULES = Registry("partition rules", {
    _RESNET: f"{_RESNET}:PARTITION_RULES",
    _PVT: f"{_PVT}:PARTITION_RULES",
    **{family: f"{family}:PARTITION_RULES" for family in (_INCEPTION, _VOVNET, _EMO, _TERMINATOR)},
    "vision_jax.models.scnn": "vision_jax.models.scnn:PARTITION_RULES",
    **{family: f"{family}:PARTITION_RULES" for family in (_FFNET, _FFNET_BACKBONES)},
})

# Model family -> its reference-weight converter (`convert(state_dict, model)`,
# see vision_jax.convert).
WEIGHT_CONVERTERS = Registry("weights converter", {
    _RESNET: "vision_jax.models.backbones.resnet_weights:convert",
    _PVT: "vision_jax.models.backbones.pvt_weights:convert",
    **{family: f"{family}_weights:convert" for family in (_INCEPTION, _VOVNET, _EMO)},
})
