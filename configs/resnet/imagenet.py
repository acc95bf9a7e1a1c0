r"""ResNet-18/50(-D) on ImageNet-1k, the standard 90-epoch SGD recipe
(Goyal et al., arXiv:1706.02677: lr 0.1 x batch/256, 5-epoch warmup; cosine
decay as in He et al., "Bag of Tricks", arXiv:1812.01187).

  python -m vision_jax.main --config=configs/resnet/imagenet.py:variant=r50 \
      --workdir=gs://bucket/r50 --config.data.data_dir=/path/to/tensorflow_datasets

Needs `imagenet2012` prepared as ArrayRecord in data_dir (see README).
Arguments: variant = r18 | r34 | r50 | r101 | r18d | r50d; batch = global batch size.
"""
from vision_jax import config as config_lib
from vision_jax.data import imagenet
from vision_jax.optim import recipes

VARIANTS = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50", "r101": "resnet101",
            "r18d": "resnet18d", "r50d": "resnet50d"}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="r50", batch=1024)
  if arg.variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose one of {sorted(VARIANTS)}.")
  c = config_lib.base_config()
  imagenet.set_data(c, arg.batch)

  c.model.name = VARIANTS[arg.variant]
  c.model.num_classes = 1000
  c.compute_dtype = "bfloat16"

  recipes.imagenet_sgd(c, arg.batch)
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2000
  return c
