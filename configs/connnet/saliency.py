r"""ConnNet (Kampffmeyer et al., "ConnNet: A Long-Range Relation-Aware
Pixel-Connectivity Network for Salient Segmentation", IEEE TIP 2019) for
salient-object segmentation: the 8-neighbour connectivity head trained with
BCE (`tasks/saliency`), aggregated to a saliency map and scored by MAE and
max F-measure (beta^2 = 0.3).

  # The demo (default): a quarter-width ResNet-18 ConnNet from scratch on the
  # objects of the embedded shapes_seg_demo (any object is salient), 2 CPU cores.
  python -m vision_jax.main --config=configs/connnet/saliency.py
  # DUTS-TR -> DUTS-TE, ImageNet-initialised ResNet-50 (folder layout below):
  python -m vision_jax.main --config=configs/connnet/saliency.py:variant=duts \
      --config.data.data_dir=/data/DUTS \
      --config.init_from.path=/weights/resnet50-0676ba61.pth --workdir=/runs/connnet_duts

Arguments: variant = demo | duts; backbone = any model-table name with
`features_only` (duts; default resnet50); batch = global batch (duts; 16).

`variant=duts` reads a segmentation folder (`data.name="seg_folder"`):
images/DUTS-TR/*.jpg with annotations/DUTS-TR/*.png for training and
images/DUTS-TE/ with annotations/DUTS-TE/ for evaluation (DUTS ships them
as DUTS-TR/DUTS-TR-Image and DUTS-TR-Mask: link or move them there; any other
benchmark, e.g. ECSSD, is one more split directory). Masks are binarised at
128 (`saliency_mask`).

No official code or training recipe of ConnNet is public, so the recipe is
this library's, from the common salient-object practice (DSS, BASNet):
training images resized to 352x352 with a horizontal flip, AdamW lr 1e-4 wd
1e-4 with a poly 0.9 schedule over 20,000 steps at batch 16; evaluation at
each image's original size (no resize; padded to a 512 canvas whose padding
is ignored), MAE and max F over the 256 thresholds of the 8-bit map.
"""
from vision_jax import config as config_lib

MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
KEEP = "keep('image', 'segmentation', 'image/size', 'image/original_size')"


def _pp(mask: str, resize: str, flip: bool, canvas: int) -> str:
  return "|".join(["decode(channels=3)", mask, *([resize] if resize else []),
                   *(["seg_flip(0.5)"] if flip else []), f"normalize({MEAN_RGB}, {STD_RGB})",
                   f"seg_pad({canvas})", KEEP])


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="demo", backbone="resnet50", batch=16)
  if arg.variant not in ("demo", "duts"):
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose 'demo' or 'duts'.")
  c = config_lib.base_config()
  c.task.name = "saliency"
  c.model.name = "connnet"
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.schedule.name = "poly"
  c.schedule.power = 0.9
  c.schedule.end_factor = 0.0
  c.evaluators = {"saliency": {"kind": "saliency"}}
  if arg.variant == "demo":
    c.data.name, c.data.train_split, c.data.eval_split = "shapes_seg_demo", "train", "val"
    mask = "saliency_mask('segmentation', threshold=1)"  # Every object class is salient.
    c.data.pp_train = _pp(mask, "seg_resize((256, 192))|seg_random_crop(192)", True, 192)
    c.data.pp_eval = _pp(mask, "", False, 256)  # Sides are 128-256: the original size.
    c.data.batch_size = 8
    c.data.eval_batch_size = 20
    c.model.backbone = "resnet18"
    c.model.backbone_args = {"width": 16}
    c.model.decoder_features = 64
    c.model.stream_features = 32
    c.model.head_features = 64
    config_lib.short_demo_run(c, learning_rate=1e-3)
  else:
    c.data.name, c.data.train_split, c.data.eval_split = "seg_folder", "DUTS-TR", "DUTS-TE"
    mask = "saliency_mask('segmentation', threshold=128)"
    c.data.pp_train = _pp(mask, "seg_resize((352, 352), keep_ratio=False)", True, 352)
    c.data.pp_eval = _pp(mask, "", False, 512)
    c.data.batch_size = arg.batch
    c.data.eval_batch_size = 16
    c.data.num_workers = 8
    c.model.backbone = arg.backbone
    c.optimizer.learning_rate = 1e-4 * arg.batch / 16
    c.total_steps = 20_000
    c.log_every_steps = 50
    c.eval_every_steps = 2_000
    c.checkpoint_every_steps = 2_000
    c.init_from.subtree = "params"
    c.init_from.target = "params/backbone"
  return c
