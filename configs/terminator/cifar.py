r"""Terminator on CIFAR-10 (Harvie Zhang, 2024, arXiv:2401.17948; the official
cfg/config.yaml and README command), and a download-free demo.

  # The official recipe (TFDS cifar10 prepared in data_dir):
  python -m vision_jax.main --config=configs/terminator/cifar.py \
      --config.data.data_dir=/data/tfds --workdir=/runs/terminator_c10
  # The demo: a 3-block Terminator on the embedded digits, 2-core CPU.
  python -m vision_jax.main --config=configs/terminator/cifar.py:demo --workdir=/tmp/terminator

Arguments: variant = cifar10 (default) | demo; a bare `demo` is variant=demo.

The recipe: the 5-block network of config.yaml (the model's defaults), 100
epochs at batch 64, cosine learning-rate decay after 8 warmup epochs, peak lr
0.001215, label smoothing 0.09 (the official LabelSmoothingCrossEntropy),
random 32-crops of the 4-padded image and horizontal flips, CIFAR mean/std
(0.4914, 0.4822, 0.4465) / (0.2470, 0.2435, 0.2616). Differences:
- The official optimizer Kar3 (sign updates of the gradient and of two gradient
  averages, betas (0.5, 0.95)) is not in this library: Adam with the same betas
  and the same peak lr (`adamw`, decoupled decay) stands in for it.
- The official `l2_reg` 5e-5 is a penalty 5e-5 · Σ‖W‖ (norms, not squared) on
  parameters named "fast" outside the slow nets, plus 1e-6 of that on the slow
  nets' 1x1 weights; here it is AdamW weight decay 5e-5 on the kernels.
- The slow neural loss is added to the cross-entropy with weight 1, as the
  official training does (the model's loss term "slow", logged as
  train/loss/slow).
- The official crops pad symmetrically (reflect with the edge); the `pad` op
  here pads with zeros.
- Eval batches of 500 divide the test set: the batch standardisation uses the
  statistics of each evaluation batch, so its size matters a little (the
  official tests at 64). The digits demo's 359 test digits leave one padded
  (masked) example in its last batch of 120, which enters that batch's
  statistics but not the accuracy.
"""
from vision_jax import config as config_lib

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
VARIANTS = ("cifar10", "demo")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="cifar10", demo=False)
  variant = "demo" if arg.demo else arg.variant
  if variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={variant!r}: choose one of {list(VARIANTS)}.")
  c = config_lib.base_config()
  c.seed = 0
  c.model.name = "terminator"
  c.model.num_classes = 10
  c.optimizer.name = "adamw"
  c.optimizer.b1, c.optimizer.b2 = 0.5, 0.95  # Kar3's betas.
  c.optimizer.weight_decay = 5e-5
  c.optimizer.weight_decay_exclude = r".*(bias|bias_map)$"  # Kernels only.
  c.schedule.name = "cosine"
  tail = "onehot(10, smoothing=0.09)|keep('image', 'labels')"
  if variant == "demo":
    c.data.name = "sklearn_digits"
    c.data.batch_size = 64
    c.data.eval_batch_size = 120  # 359 test digits: one padded example in the last batch.
    norm = "normalize(0.5, 0.5)"
    c.data.pp_train = f"decode|pad(1)|random_crop(8)|{norm}|{tail}"
    c.data.pp_eval = f"decode|{norm}|{tail}"
    c.model.image_size = 8
    c.model.in_channels = (1, 4, 12)
    c.model.bottleneck_factors = (4, 3, 2)
    c.model.num_concat_pre = (0, 0, 1)
    c.model.dropout = (0.0, 0.05, 0.05)
    c.model.global_layers = (2, 1, 1)
    c.model.global_hidden = 32
    c.model.local_hidden = 16
    c.model.local_kernel_sizes = (3, 5, 3, 5)
    c.model.hci_hidden = 16
    c.model.hi_hidden_c = 8
    c.model.hi_hidden_s = 32
    c.model.gibs_groups = 4
    c.optimizer.learning_rate = 3e-3
    c.schedule.warmup_epochs = 1.0
    c.total_epochs = 12.0
    c.log_every_steps = 20
    c.checkpoint_every_steps = 1000
  else:
    c.data.name = "cifar10"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.batch_size = 64
    c.data.eval_batch_size = 500
    c.data.num_workers = 4
    norm = f"normalize({CIFAR_MEAN}, {CIFAR_STD})"
    c.data.pp_train = f"decode(channels=3)|pad(4)|random_crop(32)|flip_lr|{norm}|{tail}"
    c.data.pp_eval = f"decode(channels=3)|{norm}|{tail}"
    c.optimizer.learning_rate = 0.001215
    c.schedule.warmup_epochs = 8.0
    c.total_epochs = 100.0
    c.log_every_steps = 100
    c.checkpoint_every_steps = 2000
  c.eval_every_steps = None
  return c
