r"""PVT v1 image classification on ImageNet-1k (Wang et al., ICCV 2021, Sec. 5.1;
the official classification recipe, which follows DeiT).

  python -m vision_jax.main --config=configs/pvt/imagenet.py:variant=small \
      --workdir=gs://bucket/pvt_small --config.data.data_dir=/path/to/tensorflow_datasets

Arguments: variant = tiny | small | medium | large; batch = global batch size.
AdamW, lr 5e-4 x batch / 512, weight decay 0.05 (not on norms, biases, position
embeddings or the cls token), cosine over 300 epochs after 5 warmup epochs,
stochastic depth 0.1 (T/S) or 0.3 (M/L), label smoothing 0.1, Inception crop
and flips at 224. DeiT's RandAugment, Mixup/CutMix and random erasing are not
part of this library's pp ops yet, so expect lower accuracy than the paper's
75.1 / 79.8 / 81.2 / 81.7 top-1 (T/S/M/L) without them.
Needs `imagenet2012` prepared as ArrayRecord in data_dir (see README).
"""
from vision_jax import config as config_lib
from vision_jax.data import imagenet

VARIANTS = {"tiny": "pvt_tiny", "small": "pvt_small", "medium": "pvt_medium",
            "large": "pvt_large"}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="small", batch=1024)
  if arg.variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose one of {sorted(VARIANTS)}.")
  c = config_lib.base_config()
  imagenet.set_data(c, arg.batch, resize_method="bicubic", label_smoothing=0.1)

  c.model.name = VARIANTS[arg.variant]
  c.model.num_classes = 1000
  c.compute_dtype = "bfloat16"

  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = 5e-4 * arg.batch / 512
  c.optimizer.weight_decay = 0.05
  c.optimizer.weight_decay_exclude = r".*(bias|scale|pos_embed\d|cls_token)$"
  c.optimizer.grad_clip_norm = None
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 5.0
  c.schedule.end_factor = 1e-5 / 5e-4  # DeiT's min_lr 1e-5.
  c.total_epochs = 300.0
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2000
  return c
