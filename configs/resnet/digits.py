r"""ResNet on scikit-learn's handwritten digits: the embedded, download-free demo.

  python -m vision_jax.main --config=configs/resnet/digits.py --workdir=/tmp/digits
  python -m vision_jax.main --config=configs/resnet/digits.py:variant=r18d,demo --workdir=/tmp/d

Arguments: variant = r18 | r34 | r50 | r18d | r50d (ResNet-D); demo = a short
run for smoke tests. The 8x8 scans are upsampled to 16x16 and fed to a narrow
(width 16) ResNet with a CIFAR-style stem.
"""
from vision_jax import config as config_lib

VARIANTS = {"r18": "resnet18", "r34": "resnet34", "r50": "resnet50",
            "r18d": "resnet18d", "r50d": "resnet50d"}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="r18", demo=False)
  if arg.variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose one of {sorted(VARIANTS)}.")
  c = config_lib.base_config()
  c.seed = 0
  c.data.name = "sklearn_digits"
  c.data.batch_size = 128
  c.data.eval_batch_size = 120
  common = "decode|resize(16)"
  tail = "normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"
  c.data.pp_train = f"{common}|pad(2)|random_crop(16)|{tail}"
  c.data.pp_eval = f"{common}|{tail}"

  c.model.name = VARIANTS[arg.variant]
  c.model.num_classes = 10
  c.model.width = 16
  c.model.small_input = True

  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.nesterov = True
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "cosine"
  c.schedule.warmup_epochs = 1.0
  c.total_epochs = 3.0 if arg.demo else 30.0
  c.log_every_steps = 10 if arg.demo else 50
  c.eval_every_steps = None
  c.checkpoint_every_steps = 100
  return c
