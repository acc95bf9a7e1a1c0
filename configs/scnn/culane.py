r"""SCNN (Pan et al., "Spatial As Deep: Spatial CNN for Traffic Scene
Understanding", AAAI 2018) on CULane, as the official code trains it
(XingangPan/SCNN experiments/train.sh; the PyTorch port's model), and a
download-free demo on the embedded `lanes_demo`.

  # The demo (default): an eighth-width SCNN from scratch on lanes_demo, 2 CPU cores.
  python -m vision_jax.main --config=configs/scnn/culane.py
  # CULane (its own layout: list/, driver_*/, laneseg_label_w16/), VGG16-BN initialised:
  python -m vision_jax.main --config=configs/scnn/culane.py:variant=culane \
      --config.data.data_dir=/data/CULane \
      --config.init_from.path=/weights/vgg16_bn-6c64b313.pth --workdir=/runs/scnn_culane

Arguments: variant = demo | culane; batch = global batch (culane; 12, the recipe's).

The recipe (/work/shared/reference/dense.md, Sec. 5): `scnn_vgg16` (VGG16-BN,
dilated conv5, SCNN D-U-R-L with kernel width 9, existence branch) on
800x288 inputs; loss CE weighted (0.4, 1, 1, 1, 1) + 0.1 existence BCE; SGD
lr 0.01 momentum 0.9 wd 1e-4, batch 12, 60k iterations, poly 0.9; CULane's
mean (0.3598, 0.3653, 0.3662) / std (0.2573, 0.2663, 0.2756). Evaluation on
the test list: prob2lines on the 9x9-smoothed maps, then the CULane F1
(30-px lanes, IoU > 0.5, one-to-one matching). Where this differs: no random
scale (760-842 x 274-304), rotation (+-2 deg) or lane-aware crop yet, the
images are resized to 800x288 directly.
"""
from vision_jax import config as config_lib

CULANE_MEAN = (0.3598, 0.3653, 0.3662)
CULANE_STD = (0.2573, 0.2663, 0.2756)
KEEP_TRAIN = "keep('image', 'segmentation', 'lanes/exist')"
KEEP_EVAL = "keep('image', 'lanes/points', 'image/original_size')"
DEMO_SIZE = (144, 400)  # lanes_demo's (height, width); the model sees it unresized.
DEMO_STAGES = ((8, 8), (16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64))  # VGG16 / 8.


def _pp(targets: str, resize: str, keep: str) -> str:
  return "|".join(["decode(channels=3)", targets, *([resize] if resize else []),
                   f"normalize({CULANE_MEAN}, {CULANE_STD})", keep])


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="demo", batch=12)
  if arg.variant not in ("demo", "culane"):
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose 'demo' or 'culane'.")
  c = config_lib.base_config()
  c.task.name = "lanes"
  c.model.name = "scnn_vgg16"
  c.schedule.name = "poly"
  c.schedule.power = 0.9
  c.schedule.end_factor = 0.0
  if arg.variant == "demo":
    c.data.name, c.data.train_split, c.data.eval_split = "lanes_demo", "train_gt", "val_gt"
    c.data.pp_train = _pp("lane_targets", "", KEEP_TRAIN)
    c.data.pp_eval = _pp("lane_targets(segmentation=False)", "", KEEP_EVAL)
    c.data.batch_size = 8
    c.data.eval_batch_size = 20
    c.model.backbone_stages = DEMO_STAGES
    c.model.layer1_features = 64
    c.model.hidden = 32
    c.model.exist_hidden = 32
    c.optimizer.name = "adamw"
    c.optimizer.weight_decay = 1e-4
    config_lib.short_demo_run(c, learning_rate=2e-3)
    # The metric at the demo's scale: CULane's 30-px lanes and 20-px row gap x 400/1640.
    scale = {"original_size": DEMO_SIZE, "row_gap": 5}
    c.task.original_size, c.task.row_gap = DEMO_SIZE, 5
    c.evaluators = {"lanes": {"kind": "lane_f1", "lane_width": 7, **scale}}
  else:
    c.data.name, c.data.train_split, c.data.eval_split = "lane_folder", "train_gt", "test"
    c.data.pp_train = _pp("lane_targets", "seg_resize((800, 288), keep_ratio=False)", KEEP_TRAIN)
    c.data.pp_eval = _pp("lane_targets(segmentation=False)",
                         "seg_resize((800, 288), keep_ratio=False, resize_label=False)", KEEP_EVAL)
    c.data.batch_size = arg.batch
    c.data.eval_batch_size = 16
    c.data.num_workers = 8
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01 * arg.batch / 12
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.total_steps = 60_000
    c.log_every_steps = 50
    c.eval_every_steps = 5_000
    c.checkpoint_every_steps = 5_000
    c.init_from.subtree = "params"
    c.init_from.target = "params/backbone"
    c.evaluators = {"lanes": {"kind": "lane_f1"}}
  return c
