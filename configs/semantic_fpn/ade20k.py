r"""Semantic FPN with a Pyramid Vision Transformer backbone on ADE20K: the
official `fpn_pvt_{t,s,m,l}_ade20k_40k` configs (whai362/PVT, segmentation/;
Wang et al., ICCV 2021, Table 5), and a download-free demo on the embedded
`shapes_seg_demo` dataset. configs/pvt_ade20k.py points here.

  # The demo (default): a half-width, one-block-per-stage PVT-Tiny from scratch, 2 CPU cores.
  python -m vision_jax.main --config=configs/pvt_ade20k.py
  # The ADE20K recipe, ImageNet-initialised backbone (ADEChallengeData2016 in mmseg's layout):
  python -m vision_jax.main --config=configs/pvt_ade20k.py:variant=small \
      --config.data.data_dir=/data/ADEChallengeData2016 \
      --config.init_from.path=/weights/pvt_small.pth --workdir=/runs/sem_fpn_pvt_s

Arguments: variant = demo | tiny | small | medium | large; ade20k = folder (mmseg's
layout: images/{training,validation}, annotations/{training,validation}; the
default) | tfds (TFDS `scene_parse150` prepared as ArrayRecord in data.data_dir);
batch = global batch (32 = 8 GPUs x 4, the recipe's).

The recipe (mmseg 0.x, as the official configs): FPN on C2-C5 to 256
channels, FPNHead with 128 channels and Dropout2d 0.1, 150 classes with
reduce_zero_label; AdamW lr 2e-4 wd 1e-4 (every parameter), poly 0.9 to 0 by
iteration, 40k iterations, batch 32; train pipeline: resize with scale
(2048, 512) x U(0.5, 2.0) keeping the aspect, random 512x512 crop with
cat_max_ratio 0.75, flip 0.5, photometric distortion, mean/std
normalisation, padding (image 0, label 255); test: resize keeping the aspect
to (2048, 512) and to sides divisible by 32 (AlignResize), whole image,
logits resized to the original size. Evaluation batches share a 1024x1024
input canvas and a 2048x2048 label canvas: an image whose resized or
original size exceeds them is skipped and counted (`miou/skipped_examples`);
mmseg evaluates one unpadded image at a time.
"""
from vision_jax import config as config_lib

BACKBONES = {"tiny": "pvt_tiny", "small": "pvt_small", "medium": "pvt_medium",
             "large": "pvt_large"}
MEAN_RGB = (0.485, 0.456, 0.406)  # mmseg's (123.675, 116.28, 103.53) / 255.
STD_RGB = (0.229, 0.224, 0.225)  # mmseg's (58.395, 57.12, 57.375) / 255.
KEEP = "keep('image', 'segmentation', 'image/size', 'image/original_size', " \
       "'count/invalid_label_pixels')"
ADE20K_CLASSES = 150
# The demo: the main job's demo PVT-Tiny (half widths, one block per stage).
DEMO_BACKBONE = {"embed_dims": (32, 64, 160, 256), "num_heads": (1, 1, 2, 4), "depths": (1, 1, 1, 1),
                 "mlp_ratios": (4, 4, 4, 4), "drop_path_rate": 0.0}
DEMO_CLASSES = ("background", "circle", "square", "triangle", "star", "ring", "cross", "line")


def _pp_train(label: str, scale, crop: int, classes: int, reduce_zero_label: bool,
              rescale_and_distort: bool = True) -> str:
  """mmseg's train pipeline; without `rescale_and_distort`, no 0.5-2.0 rescaling
  and no photometric distortion (the demo's: measured to learn faster from scratch)."""
  return "|".join([
      "decode(channels=3)",
      f"seg_label({label!r}, reduce_zero_label={reduce_zero_label}, num_classes={classes})",
      f"seg_resize({tuple(scale)}" + (", ratio_range=(0.5, 2.0))" if rescale_and_distort else ")"),
      f"seg_random_crop({crop}, cat_max_ratio=0.75)", "seg_flip(0.5)",
      *(["photometric_distortion"] if rescale_and_distort else []),
      f"normalize({MEAN_RGB}, {STD_RGB})", f"seg_pad({crop})", KEEP])


def _pp_eval(label: str, scale, canvas: int, label_canvas: int, classes: int,
             reduce_zero_label: bool) -> str:
  return "|".join([
      "decode(channels=3)",
      f"seg_label({label!r}, reduce_zero_label={reduce_zero_label}, num_classes={classes})",
      f"seg_resize({tuple(scale)}, size_divisor=32, resize_label=False)",
      f"normalize({MEAN_RGB}, {STD_RGB})", f"seg_pad({canvas}, label_size={label_canvas})", KEEP])


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="demo", ade20k="folder", batch=32)
  if arg.variant != "demo" and arg.variant not in BACKBONES:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose 'demo' or one of "
                                 f"{sorted(BACKBONES)}.")
  c = config_lib.base_config()
  c.task.name = "segmentation"
  c.model.name = "semantic_fpn"
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_exclude = ""  # mmseg 0.x decays every parameter.
  c.schedule.name = "poly"
  c.schedule.power = 0.9
  c.schedule.end_factor = 0.0

  if arg.variant == "demo":
    c.data.name, c.data.train_split, c.data.eval_split = "shapes_seg_demo", "train", "val"
    label, classes, reduce_zero_label = "segmentation", len(DEMO_CLASSES), False
    c.data.pp_train = _pp_train(label, (256, 192), 192, classes, reduce_zero_label,
                                rescale_and_distort=False)
    c.data.pp_eval = _pp_eval(label, (256, 192), 256, 256, classes, reduce_zero_label)
    c.data.batch_size = 8
    c.data.eval_batch_size = 20
    c.model.backbone = "pvt_tiny"
    c.model.backbone_args = dict(DEMO_BACKBONE)
    c.model.fpn_features = 64
    c.model.head_channels = 64
    config_lib.short_demo_run(c, learning_rate=1e-3)
    names = list(DEMO_CLASSES)
  else:
    classes, reduce_zero_label = ADE20K_CLASSES, True
    if arg.ade20k == "folder":
      c.data.name, c.data.train_split, c.data.eval_split = "seg_folder", "training", "validation"
      label = "segmentation"
    elif arg.ade20k == "tfds":
      c.data.name, c.data.train_split, c.data.eval_split = "scene_parse150", "train", "test"
      label = "annotation"
    else:
      raise config_lib.ConfigError(f"ade20k={arg.ade20k!r}: choose 'folder' or 'tfds'.")
    c.data.pp_train = _pp_train(label, (2048, 512), 512, classes, reduce_zero_label)
    c.data.pp_eval = _pp_eval(label, (2048, 512), 1024, 2048, classes, reduce_zero_label)
    c.data.batch_size = arg.batch
    c.data.eval_batch_size = 8
    c.data.num_workers = 8
    c.model.backbone = BACKBONES[arg.variant]
    c.model.backbone_args = {"drop_path_rate": 0.1}
    c.optimizer.learning_rate = 2e-4 * arg.batch / 32
    c.total_steps = 40_000
    c.log_every_steps = 50
    c.eval_every_steps = 4_000
    c.checkpoint_every_steps = 4_000
    c.init_from.subtree = "params"
    c.init_from.target = "params/backbone"
    names = None
  c.model.num_classes = classes  # The task takes it from the model.
  c.evaluators = {"miou": {"kind": "miou", "num_classes": classes, "num_pictures": 4,
                           **({"class_names": names} if names else {})}}
  return c
