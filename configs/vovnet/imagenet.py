r"""VoVNet (Lee et al., arXiv:1904.09730) and eSE-VoVNet / VoVNetV2 (Lee & Park,
arXiv:1911.06667) classifiers on ImageNet-1k, and a digits demo.

  python -m vision_jax.main --config=configs/vovnet/imagenet.py:variant=39b \
      --workdir=gs://bucket/ese_vovnet39b --config.data.data_dir=/path/to/tensorflow_datasets
  python -m vision_jax.main --config=configs/vovnet/imagenet.py:demo --workdir=/tmp/vovnet_demo

Arguments: variant = 39a | 57a | 19b_dw | 39b | 57b (vovnet39a, vovnet57a,
ese_vovnet19b_dw, ese_vovnet39b, ese_vovnet57b; default 39b); batch = global
batch size; demo = a narrow eSE-VoVNet-39 on the embedded digits instead
(1-2 min on a 2-core CPU).

Input and evaluation are timm's default configs for these models: bicubic
Inception crop and flip at 224, eval resize of the short side to 256 and a
central 224 crop (crop 0.875), ImageNet mean/std; ese_vovnet57b (tag
ra4_e3600_r256_in1k) trains at 256 and evaluates at 256 from a 269 short side
(crop 0.95) with mean = std = 0.5.

Training: neither paper's retrieved text states an ImageNet recipe, and timm's
model cards name only the recipe family (`RA`, RandAugment, for 19b_dw / 39b;
`RA4`, MobileNetV4-style, for 57b) without its hyperparameters, so every
variant uses the standard 90-epoch SGD recipe (Goyal et al., arXiv:1706.02677:
lr 0.1 x batch / 256, 5-epoch warmup, Nesterov momentum 0.9, weight decay 1e-4;
cosine decay). RandAugment, Mixup/CutMix, random erasing and weight EMA are not
part of this library yet, so expect less than timm's quoted top-1 (README).
Needs `imagenet2012` prepared as ArrayRecord in data_dir (see README).
"""
from vision_jax import config as config_lib
from vision_jax.data import imagenet
from vision_jax.optim import recipes

VARIANTS = {"39a": "vovnet39a", "57a": "vovnet57a", "19b_dw": "ese_vovnet19b_dw",
            "39b": "ese_vovnet39b", "57b": "ese_vovnet57b"}
# variant -> (train/eval size, eval crop fraction, mean, std): timm's default cfgs.
INPUT = {**{v: (224, 0.875, imagenet.MEAN_RGB, imagenet.STD_RGB) for v in VARIANTS},
         "57b": (256, 0.95, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}
# The demo: ese_vovnet39b's layout (residual, eSE, 2-block stages) with an eighth
# of the stage widths and 3 convs per block, on the 8x8 digits upsampled to 32x32 (C5 is 1x1).
DEMO_MODEL = {"name": "ese_vovnet39b", "num_classes": 10, "layers": 3,
              "stem_features": (16, 16, 32), "mid_features": (16, 24, 32, 40),
              "out_features": (32, 64, 96, 128)}


def _imagenet_pp(size: int, crop: float, mean, std) -> tuple[str, str]:
  """timm's train / eval transforms: bicubic Inception crop + flip; short side
  floor(size / crop), central crop `size`."""
  norm = f"normalize({mean}, {std})"
  tail = f"onehot({imagenet.NUM_CLASSES})|keep('image', 'labels')"
  train = f"decode(channels=3)|random_resized_crop({size}, method='bicubic')|flip_lr|{norm}|{tail}"
  evaluate = (f"decode(channels=3)|resize_small({int(size / crop)}, method='bicubic')|"
              f"central_crop({size})|{norm}|{tail}")
  return train, evaluate


def _demo(c) -> None:
  c.seed = 0
  c.data.name = "sklearn_digits"
  c.data.batch_size = 128
  c.data.eval_batch_size = 120
  common = "decode|resize(32)"
  tail = "normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"
  c.data.pp_train = f"{common}|pad(4)|random_crop(32)|{tail}"
  c.data.pp_eval = f"{common}|{tail}"
  c.model.update(DEMO_MODEL)
  c.optimizer.learning_rate = 0.1
  c.optimizer.weight_decay = 5e-4
  c.schedule.warmup_epochs = 1.0
  c.total_epochs = 20.0
  c.log_every_steps = 10
  c.eval_every_steps = None
  c.checkpoint_every_steps = 200


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="39b", batch=1024, demo=False)
  if arg.variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose one of {sorted(VARIANTS)}.")
  c = config_lib.base_config()
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.schedule.name = "cosine"
  if arg.demo:
    _demo(c)
    return c
  imagenet.set_data(c, arg.batch, resize_method="bicubic")
  c.data.pp_train, c.data.pp_eval = _imagenet_pp(*INPUT[arg.variant])

  c.model.name = VARIANTS[arg.variant]
  c.model.num_classes = 1000
  c.compute_dtype = "bfloat16"

  recipes.imagenet_sgd(c, arg.batch)
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2000
  return c
