r"""Poincaré ResNet on CIFAR-10/100 (van Spengler, Berkhout & Mettes, ICCV 2023,
Sec. 5.1): the hyperbolic 8-16-32 ResNet-20/32, its Euclidean baseline and the
Euclidean network with a Poincaré classifier; and a download-free demo.

  # The demo (default): hyperbolic ResNet-20 on the embedded digits, 2-core CPU.
  python -m vision_jax.main --config=configs/poincare/cifar.py
  # The paper's runs (TFDS cifar10 / cifar100 prepared in data_dir):
  python -m vision_jax.main --config=configs/poincare/cifar.py:variant=cifar100,model=hyperbolic,depth=32 \
      --config.data.data_dir=/data/tfds --workdir=/runs/hyp_r32_c100

Arguments: variant = demo | cifar10 | cifar100; model = hyperbolic | euclidean |
hybrid (Euclidean body, Poincaré classifier); depth = 20 | 32; autodiff = True
differentiates the hyperbolic ops with plain autodiff instead of their
hand-written VJPs (same numbers, more time and memory).

The recipe (the official train.sh): batch 128, Adam lr 1e-3 with coupled L2
weight decay 1e-4 on every parameter, constant learning rate, 100 epochs;
images normalised to [-1, 1] then zero-padded by 4 and randomly cropped to 32,
flipped left-right; curvature c = 0.1 fixed in every layer. The demo: the
8x8 digits upsampled to 16x16, random 2-pixel shifts, 30 epochs with the
learning rate decayed by a cosine.
"""
from vision_jax import config as config_lib

MODELS = ("hyperbolic", "euclidean", "hybrid")
DATASETS = {"cifar10": 10, "cifar100": 100}


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="demo", model="hyperbolic", depth=20, autodiff=False)
  if arg.variant != "demo" and arg.variant not in DATASETS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose 'demo' or one of "
                                 f"{sorted(DATASETS)}.")
  if arg.model not in MODELS:
    raise config_lib.ConfigError(f"model={arg.model!r}: choose one of {list(MODELS)}.")
  if arg.depth not in (20, 32):
    raise config_lib.ConfigError(f"depth={arg.depth}: choose 20 or 32.")
  c = config_lib.base_config()
  c.model.name = f"{arg.model}_resnet{arg.depth}"
  c.model.c = 0.1
  c.model.custom_grads = not arg.autodiff
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-3
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_exclude = ""  # torch.optim.Adam decays every parameter.
  c.schedule.name = "constant"
  c.data.batch_size = 128
  tail = "|keep('image', 'labels')"
  if arg.variant == "demo":
    c.data.name = "sklearn_digits"
    c.data.eval_batch_size = 120
    common = "decode|resize(16)|normalize(0.5, 0.5)|onehot(10)"
    c.data.pp_train = f"{common}|pad(2)|random_crop(16){tail}"
    c.data.pp_eval = common + tail
    c.model.num_classes = 10
    c.schedule.name = "cosine"  # Decays to 0: the final weights, not a noisy snapshot.
    c.total_epochs = 30.0
    c.log_every_steps = 20
    c.checkpoint_every_steps = 200
  else:
    c.data.name = f"{arg.variant}"
    c.data.train_split, c.data.eval_split = "train", "test"
    c.data.eval_batch_size = 500
    c.data.num_workers = 4
    common = f"decode(channels=3)|normalize(0.5, 0.5)|onehot({DATASETS[arg.variant]})"
    c.data.pp_train = f"{common}|pad(4)|random_crop(32)|flip_lr{tail}"
    c.data.pp_eval = common + tail
    c.model.num_classes = DATASETS[arg.variant]
    c.total_epochs = 100.0
    c.log_every_steps = 100
    c.checkpoint_every_steps = 2000
  c.eval_every_steps = None
  return c
