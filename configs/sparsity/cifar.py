r"""The papers' CIFAR recipes of sparse training, on TFDS `cifar10` / `cifar100`
(not run here: no data on these machines).

  python -m vision_jax.main --config=configs/sparsity/cifar.py:method=granet,density=0.05 \
      --workdir=/tmp/granet_r50_c10
  python -m vision_jax.main --config=configs/sparsity/cifar.py:method=rigl,dataset=cifar100

GraNet's CIFAR recipe (official `CIFAR/main.py` and README commands): ResNet-50
with the CIFAR stem, SGD lr 0.1 momentum 0.9, L2 5e-4, batch 100, 160 epochs, lr
x 0.1 at epochs 80 and 120; masks over every conv / linear kernel, updated every
1,000 iterations; gradual pruning from epoch 0 to 110 (`--final-prune-epoch`
default) from random ERK masks at `initial_density` (0.5 in the README's
GraNet command; 1 = dense start, the GMP command), regrowth 0.5 -> 0.005
cosine over the whole run. RigL / SET use the same recipe with drop fraction
0.3 cosine until 75% of training; `static` is random ERK (Liu et al. 2022).
Reported (GraNet Table 2, ResNet-50): CIFAR-10 95% GraNet 94.44, GMP 94.52
(dense 94.75); CIFAR-100 90% GMP 76.91 (dense 78.23).
"""

from vision_jax import config as config_lib

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
METHODS = ("dense", "static", "gmp", "rigl", "set", "granet")
DATASETS = {"cifar10": 10, "cifar100": 100}


def sparsity_spec(method: str, density: float, initial_density: float) -> dict:
  spec = {"name": "sparsity", "method": method, "density": density, "frequency_steps": 1000}
  if method == "static":
    return {"name": "sparsity", "method": "static", "density": density, "distribution": "erk"}
  if method in ("gmp", "granet"):
    spec.update(begin_epochs=0.0, end_epochs=110.0)
  if method == "granet":
    spec.update(distribution="erk", initial_density=initial_density)
  if method in ("rigl", "set"):
    spec.update(distribution="erk", drop_fraction=0.3)
  return spec


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, method="granet", density=0.05, initial_density=0.5,
                             dataset="cifar10", seed=0)
  if arg.method not in METHODS:
    raise config_lib.ConfigError(f"method={arg.method!r}: choose one of {list(METHODS)}.")
  if arg.dataset not in DATASETS:
    raise config_lib.ConfigError(f"dataset={arg.dataset!r}: choose one of {list(DATASETS)}.")
  classes = DATASETS[arg.dataset]
  c = config_lib.base_config()
  c.seed = arg.seed
  c.data.name = arg.dataset
  c.data.train_split, c.data.eval_split = "train", "test"
  c.data.batch_size = 100
  c.data.eval_batch_size = 500
  c.data.num_workers = 4
  norm = f"normalize({CIFAR_MEAN}, {CIFAR_STD})"
  tail = f"onehot({classes})|keep('image', 'labels')"
  c.data.pp_train = f"decode(channels=3)|pad(4)|random_crop(32)|flip_lr|{norm}|{tail}"
  c.data.pp_eval = f"decode(channels=3)|{norm}|{tail}"
  c.model.name = "resnet50"
  c.model.num_classes = classes
  c.model.small_input = True
  c.optimizer.name = "sgd"
  c.optimizer.learning_rate = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = "step"
  c.schedule.boundaries = (0.5, 0.75)
  c.schedule.decay_factor = 0.1
  c.total_epochs = 160.0
  if arg.method != "dense":
    c.optimizer.transforms = (sparsity_spec(arg.method, arg.density, arg.initial_density),)
  c.log_every_steps = 100
  c.checkpoint_every_steps = 2000
  c.eval_every_steps = None
  return c
