r"""EMOv2 image classification on ImageNet-1k (Zhang et al., 2024, arXiv:2412.06674;
the official recipe, zhangzjn/EMOv2 configs/emo2/emo2_224.py).

  python -m vision_jax.main --config=configs/emo/imagenet.py:variant=5m \
      --workdir=gs://bucket/emo2_5m --config.data.data_dir=/path/to/tensorflow_datasets

Arguments: variant = 1m | 2m | 5m | 20m | 50m; batch = global batch size; demo.
300 epochs at batch 1024, AdamW (betas 0.9, 0.999, eps 1e-8) at lr 1.5e-3 x
batch / 512 (3e-3 at 1024), weight decay 0.05 (not on biases, norms or the
LayerScale gammas), per-step cosine after 20 warmup epochs, warmup start and
final lr both 1/6000 of the peak (5e-7 at 1024), gradient-norm clip 5.0,
label smoothing 0.1, stochastic depth as in each variant (0.04036 for 1M, 0.05
for 2M/5M, 0.1 for 20M, 0.2 for 50M), mixed precision (bfloat16 here, fp16 AMP
there). Training crops: random resized crop to 224 and flips; evaluation:
resize to 256 (bicubic) and central 224 crop, ImageNet mean/std. Not yet in
this library, so expect lower accuracy than the official 72.3 / 75.8 / 79.4
top-1 (1M / 2M / 5M) without them: the weight EMA (decay 0.9998), RandAugment
('rand-m9-mstd0.5-inc1'), colour jitter 0.4 and random interpolation of the
training crop (the official run uses no Mixup/CutMix and no random erasing).
Needs `imagenet2012` prepared as ArrayRecord in data_dir (see README).

`demo` trains a narrow EMOv2 (the 1M's expansions; depths 1, 2, 3, 2, widths 16,
24, 40, 64; 2x2 windows) on the embedded digits instead (no downloads): the 8x8
scans upsampled to 32x32, 6 epochs at batch 64, AdamW at 4e-3 with the same
weight decay, clipping and label smoothing (depthwise convs are slow on CPUs,
hence the narrow net):

  python -m vision_jax.main --config=configs/emo/imagenet.py:demo --workdir=/tmp/emo_demo
"""
from vision_jax import config as config_lib
from vision_jax.data import imagenet

VARIANTS = {"1m": "emo2_1m", "2m": "emo2_2m", "5m": "emo2_5m", "20m": "emo2_20m",
            "50m": "emo2_50m"}
MIN_LR_FACTOR = 1 / 6000  # Official warmup_lr = lr_min = lr / 1e3 / 1.5 / 4.


def _imagenet(c, arg) -> None:
  imagenet.set_data(c, arg.batch, resize_method="bicubic", label_smoothing=0.1)
  c.model.num_classes = 1000
  c.compute_dtype = "bfloat16"
  c.optimizer.learning_rate = 1.5e-3 * arg.batch / 512
  c.schedule.warmup_epochs = 20.0
  c.total_epochs = 300.0
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2000


def _demo(c, arg) -> None:
  del arg
  c.data.name = "sklearn_digits"
  c.data.batch_size = 64
  c.data.eval_batch_size = 120
  tail = "normalize(0.5, 0.5)|keep('image', 'labels')"
  c.data.pp_train = f"decode|resize(32)|pad(4)|random_crop(32)|onehot(10, smoothing=0.1)|{tail}"
  c.data.pp_eval = f"decode|resize(32)|onehot(10)|{tail}"
  c.model.num_classes = 10
  c.model.depths = (1, 2, 3, 2)
  c.model.embed_dims = (16, 24, 40, 64)
  c.model.dim_heads = (8, 8, 10, 16)
  c.model.window_size = 2
  c.optimizer.learning_rate = 4e-3
  c.schedule.warmup_epochs = 1.0
  c.total_epochs = 6.0
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="", batch=1024, demo=False)
  arg.variant = arg.variant or ("1m" if arg.demo else "5m")
  if arg.variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose one of {sorted(VARIANTS)}.")
  c = config_lib.base_config()
  c.model.name = VARIANTS[arg.variant]
  c.optimizer.name = "adamw"
  c.optimizer.b1, c.optimizer.b2, c.optimizer.eps = 0.9, 0.999, 1e-8
  c.optimizer.weight_decay = 0.05
  c.optimizer.weight_decay_exclude = r".*(bias|scale|gamma)$"
  c.optimizer.grad_clip_norm = 5.0
  c.schedule.name = "cosine"
  c.schedule.warmup_start_factor = MIN_LR_FACTOR
  c.schedule.end_factor = MIN_LR_FACTOR
  (_demo if arg.demo else _imagenet)(c, arg)
  return c
