r"""Grassmann Class Representation (GCR, Wang, Li & Zhang, ICCV 2023) against the
softmax (linear) head, ResNet-D backbones on ImageNet-1k: the paper's recipe
(official configs resnet50d_8xb32_coslr_in1k[_gcr8].py): batch 256, SGD
momentum 0.9, lr 0.1 x batch/256, weight decay 1e-4 on every weight, cosine
over 100 epochs without warmup; GCR: k = 8, gamma = 25, subspaces by
Riemannian SGD at the same lr, QR every 5 steps, no decay. Paper top-1:
ResNet50-D softmax 78.05, GCR k=8 79.26 (k = 1/4/16/32: 78.42/78.68/79.21/78.63).

  python -m vision_jax.main --config=configs/gcr/imagenet.py:head=gcr,k=8 \
      --workdir=gs://bucket/gcr_r50d --config.data.data_dir=/path/to/tensorflow_datasets
  python -m vision_jax.main --config=configs/gcr/imagenet.py:head=softmax --workdir=...

Add `transfer=cifar10` (or cifar100, ...) for a linear-transfer evaluator on that
TFDS dataset's train/test features. Needs `imagenet2012` as ArrayRecord (see README).

`demo` runs on the embedded digits instead (no downloads): a narrow ResNet-18
is trained on the digits 0-4 and evaluated there, and its features are
probed linearly on the unseen digits 5-9 (train_5to9 -> test_5to9):

  python -m vision_jax.main --config=configs/gcr/imagenet.py:demo,head=gcr
  python -m vision_jax.main --config=configs/gcr/imagenet.py:demo,head=softmax

Arguments: head = gcr | softmax; k = subspace dimension; variant = r18 | r18d |
r50 | r50d (default r50d, r18 for the demo); batch = global batch; transfer = a
TFDS dataset name with transfer_classes classes; demo.
"""
from vision_jax import config as config_lib
from vision_jax.data import imagenet

VARIANTS = {"r18": "resnet18", "r18d": "resnet18d", "r50": "resnet50", "r50d": "resnet50d"}
HEADS = ("gcr", "softmax")
# The class subspaces: Riemannian SGD on the Grassmannian at the main lr, momentum
# 0.9, re-orthonormalised every 5 steps, no weight decay (the official RSGD).
SUBSPACES = (r".*subspaces$", {"name": "grassmann_sgd", "lr_factor": 1.0, "momentum": 0.9,
                               "reorth_every": 5, "retraction": "geodesic"})
DEMO_CLASSES = 5  # Digits 0-4; the transfer target is 5-9.


def _set_model(c, backbone: str, arg, num_classes: int, **backbone_args) -> None:
  c.model.num_classes = num_classes
  if arg.head == "softmax":
    c.model.name = backbone
    c.model.update(backbone_args)
  else:
    c.model.name = "gcr"
    c.model.backbone = backbone
    c.model.backbone_args = backbone_args
    c.model.subspace_dim = arg.k
    c.model.gamma = 25.0
    c.optimizer.groups = (SUBSPACES,)


def _imagenet(c, arg) -> None:
  imagenet.set_data(c, arg.batch)
  _set_model(c, VARIANTS[arg.variant], arg, 1000)
  c.compute_dtype = "bfloat16"
  c.optimizer.learning_rate = 0.1 * arg.batch / 256
  c.total_epochs = 100.0
  c.log_every_steps = 100
  c.eval_every_steps = 5000
  c.checkpoint_every_steps = 2000
  if arg.transfer:
    c.evaluators.eval = {"kind": "classification"}
    c.evaluators.transfer = {
        "kind": "linear_transfer", "dataset": arg.transfer, "fit_split": "train",
        "split": "test", "batch_size": 1000,
        "pp": f"decode(channels=3)|resize(224)|{imagenet.NORMALIZE}|onehot({arg.transfer_classes})"
              "|keep('image', 'labels')"}


def _demo(c, arg) -> None:
  c.data.name = "sklearn_digits"
  c.data.train_split = "train_0to4"
  c.data.eval_split = "test_0to4"
  c.data.batch_size = 64
  c.data.eval_batch_size = 64
  common = "decode|resize(16)|normalize(0.5, 0.5)"
  keep = "keep('image', 'labels')"
  # The source task's logits cover the digits 0-4; the probe's labels are 5-9.
  source = f"onehot({DEMO_CLASSES})|{keep}"
  c.data.pp_train = f"decode|resize(16)|pad(2)|random_crop(16)|normalize(0.5, 0.5)|{source}"
  c.data.pp_eval = f"{common}|{source}"
  _set_model(c, VARIANTS[arg.variant], arg, DEMO_CLASSES, width=16, small_input=True)
  c.evaluators.eval = {"kind": "classification", "top_k": (1,)}
  c.evaluators.transfer = {"kind": "linear_transfer", "fit_split": "train_5to9",
                           "split": "test_5to9", "pp": f"{common}|onehot(10)|{keep}"}
  c.optimizer.learning_rate = 0.1
  c.total_epochs = 20.0
  c.log_every_steps = 20
  c.checkpoint_every_steps = 500


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, head="gcr", k=8, variant="", batch=256, transfer="",
                             transfer_classes=10, demo=False)
  if arg.head not in HEADS:
    raise config_lib.ConfigError(f"head={arg.head!r}: choose one of {HEADS}.")
  arg.variant = arg.variant or ("r18" if arg.demo else "r50d")
  if arg.variant not in VARIANTS:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose one of {sorted(VARIANTS)}.")
  c = config_lib.base_config()
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_exclude = None  # mmpretrain's SGD decays every weight.
  c.schedule.name = "cosine"
  (_demo if arg.demo else _imagenet)(c, arg)
  return c
