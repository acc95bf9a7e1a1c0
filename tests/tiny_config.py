r"""A seconds-long digits run for tests: 2-stage width-8 ResNet on 8x8 images.

  python -m vision_jax.main --config=tests/tiny_config.py --workdir=/tmp/tiny
"""
from vision_jax import config as config_lib


def tiny_config(**overrides):
  """A seconds-long digits run: 2-stage width-8 ResNet on 8x8 images."""
  c = config_lib.base_config()
  c.data.name = "sklearn_digits"
  c.data.batch_size = 32
  c.data.eval_batch_size = 64
  c.data.pp_train = "decode|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels')"
  c.data.pp_eval = c.data.pp_train
  c.model.name = "resnet18"
  c.model.stage_sizes = (1, 1)
  c.model.width = 8
  c.model.num_classes = 10
  c.model.small_input = True
  c.optimizer.learning_rate = 0.05
  c.optimizer.weight_decay = 1e-4
  c.schedule.warmup_steps = 2
  c.total_steps = 20
  c.log_every_steps = 5
  c.checkpoint_every_steps = 10
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


# GraNet on every kernel but the stem's and head's: random 60% masks pruned to 30% by
# step 40, drop-and-grow every 5 steps (exercises every mask update).
SPARSE = {"name": "sparsity", "method": "granet", "density": 0.3, "initial_density": 0.6,
          "exclude": "(stem_conv|head)/kernel", "begin_steps": 5, "end_steps": 40, "frequency_steps": 5}


def get_config(arg=None):
  """`tiny_config.py` or `tiny_config.py:sparse` (with SPARSE)."""
  if arg not in (None, "", "sparse"):
    raise ValueError(f"tiny_config takes no argument or 'sparse', got {arg!r}.")
  return tiny_config(**({"optimizer.transforms": (SPARSE,)} if arg == "sparse" else {}))
