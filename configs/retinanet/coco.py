r"""RetinaNet on COCO with a Pyramid Vision Transformer or ResNet-50 backbone:
mmdetection 2.13's `retinanet_pvt_{t,s,m,l}_fpn_1x_coco` and
`retinanet_r50_fpn_1x_coco` (Wang et al., ICCV 2021, Table 3), and a
download-free demo on the embedded `shapes_demo` dataset. configs/pvt_coco.py
points here.

  # The demo (default): a half-width, one-block-per-stage PVT-Tiny from scratch, 2 CPU cores.
  python -m vision_jax.main --config=configs/pvt_coco.py
  # COCO 1x recipe, ImageNet-initialised backbone:
  python -m vision_jax.main --config=configs/pvt_coco.py:variant=small \
      --config.data.data_dir=/data/tfds --config.init_from.path=/weights/pvt_small.pth \
      --workdir=/runs/retinanet_pvt_s
  # The paper's ResNet-50 baseline row (torchvision ImageNet weights):
  python -m vision_jax.main --config=configs/retinanet/coco.py:variant=r50 \
      --config.init_from.path=/weights/resnet50-0676ba61.pth --workdir=/runs/retinanet_r50

Any backbone of the zoo by name (no paper recipe of RetinaNet exists for
them; BatchNorm on its ImageNet statistics, norm_eval, in each):
  variant = vovnet39 | vovnet57 (V1, vovnet39a/57a) | ese_vovnet19b_dw |
  ese_vovnet39b | ese_vovnet57b | inception_v4 | inception_resnet_v2: the
  ResNet-50 recipe below without its ResNet-specific frozen stages;
  variant = emo2_1m | emo2_2m | emo2_5m: the PVT recipe (AdamW 1e-4).
  python -m vision_jax.main --config=configs/retinanet/coco.py:variant=ese_vovnet39b \
      --config.init_from.path=/weights/ese_vovnet39b.pth --workdir=/runs/retinanet_v39b

Arguments: variant = demo | tiny | small | medium | large | r50 | a zoo name; canvas = the demo's
long side (a multiple of 32); groups = aspect (the default: on COCO landscape images
batched on 800x1344, portrait ones on 1344x800, mmdet's GroupSampler; the demo's on
128x192 and 192x128, resized to fit) | single (every image on one 1344x1344 canvas, the
demo's on 192x192); coco = tfds (TFDS
`coco/2017` prepared as ArrayRecord in data.data_dir) | folder (a COCO folder
with annotations/instances_{train,val}2017.json in data.data_dir); batch =
global batch size (16, as 8 GPUs x 2 images, for the recipe).

The recipe: train images without annotations left out (mmdet's
filter_empty_gt; evaluation keeps all), resize keeping aspect to 1333x800,
flip 0.5, mmdet mean/std,
AdamW lr 1e-4 wd 1e-4 (on every parameter), 12 epochs, x0.1 at epochs 8 and
11, linear warmup over 500 iterations from 0.001 x lr. Each global batch is
all landscape or all portrait images (data.canvases), padded to 800x1344 or
1344x800, so there are two step shapes, each compiled once; mmdet pads each
batch to its own size (a multiple of 32). groups=single pads every image to
one 1344x1344 canvas instead: 1.7x the pixels. `init_from` takes the official
ImageNet checkpoints (.pth, as released with the paper) or a Hugging Face
`PvtForImageClassification` (.safetensors) and loads the backbone only.
ResNet-50 (mmdet's `retinanet_r50_fpn_1x_coco`): the torchvision layout
(BatchNorm statistics included), BatchNorm kept on those statistics
(norm_eval), the stem and first stage frozen (frozen_stages=1), SGD lr 0.01
momentum 0.9 wd 1e-4 for batch 16, gradients clipped at norm 35 (mmdet's
grad_clip for this config).
"""
from vision_jax import config as config_lib

BACKBONES = {"tiny": "pvt_tiny", "small": "pvt_small", "medium": "pvt_medium",
             "large": "pvt_large", "r50": "resnet50"}
# The zoo: variant -> (backbone, recipe); "sgd" is _r50_recipe's, "adamw" the PVT one's.
ZOO = {"vovnet39": ("vovnet39a", "sgd"), "vovnet57": ("vovnet57a", "sgd"),
       **{n: (n, "sgd") for n in ("ese_vovnet19b_dw", "ese_vovnet39b", "ese_vovnet57b",
                                  "inception_v4", "inception_resnet_v2")},
       **{n: (n, "adamw") for n in ("emo2_1m", "emo2_2m", "emo2_5m")}}
# mmdet's frozen_stages=1 for ResNet: the stem and the first stage do not train.
R50_FROZEN = r"backbone/(stem_.*|stage1_.*)"
# Stochastic depth of the official detection backbones (detection/pvt.py):
# 0.1 for Tiny/Small; Medium/Large keep the constructor default of 0.
DETECTION_DROP_PATH = {"tiny": 0.1, "small": 0.1, "medium": 0.0, "large": 0.0}
MEAN_RGB = (0.485, 0.456, 0.406)  # mmdet's (123.675, 116.28, 103.53) / 255.
STD_RGB = (0.229, 0.224, 0.225)  # mmdet's (58.395, 57.12, 57.375) / 255.
KEEP = "keep('image', 'boxes', 'classes', 'image/id', 'image/scale', 'image/size', " \
       "'count/dropped_boxes', 'count/truncated_boxes')"
# The demo: PVT-Tiny's structure (SR 8-4-2-1, MLP ratio 4) at half its widths and one block
# per stage instead of two: 1.6x the steps per second, which is worth more than the depth here
# (AP50 0.53 after 3,500 steps vs 0.41 after 2,500 steps of the two-block model). Aspect-ratio
# canvases of 128x192 / 192x128 and 2 convs per head instead of 4 make its step 0.60x the
# 192x192, 4-conv one (bench/demo_step.py; configs/retinanet/README.md#the-demo).
DEMO_BACKBONE = {"embed_dims": (32, 64, 160, 256), "num_heads": (1, 1, 2, 4), "depths": (1, 1, 1, 1),
                 "mlp_ratios": (4, 4, 4, 4), "drop_path_rate": 0.0}
DEMO_CANVAS = 192
DEMO_HEAD_CONVS = 2  # Of RetinaNet's 4 stacked convs per head.


def demo_short_side(long: int) -> int:
  """The demo canvases' short side for long side `long`: 2/3 of it, a multiple of 32
  (192 -> 128: landscape batches on 128x192, portrait ones on 192x128)."""
  return max(32, 2 * long // 3 // 32 * 32)


# COCO's aspect-ratio groups: (800, 1333) keep-ratio resizes of landscape (and square) images fit
# the first canvas, of portrait ones the second.
COCO_CANVASES = ((800, 1344), (1344, 800))
COCO_SINGLE_CANVAS = (1344, 1344)


def _pp(resize: str, canvas: tuple[int, int] | None, max_boxes: int, train: bool) -> str:
  """The detection chain; canvas None: the aspect-ratio group's (`pad_to_canvas`)."""
  ops = ["decode(channels=3)", f"coco_objects(drop_crowd={train})", resize]
  if train:
    ops.append("flip_lr_boxes(0.5)")
  pad = "pad_to_canvas" if canvas is None else f"pad_to{tuple(canvas)}"
  ops += [f"normalize({MEAN_RGB}, {STD_RGB})", pad, f"pad_boxes({max_boxes})", KEEP]
  return "|".join(ops)


def _coco_data(c, source: str) -> None:
  if source == "tfds":
    c.data.name, c.data.train_split, c.data.eval_split = "coco/2017", "train", "validation"
  elif source == "folder":
    c.data.name, c.data.train_split, c.data.eval_split = "coco_folder", "train2017", "val2017"
  else:
    raise config_lib.ConfigError(f"coco={source!r}: choose 'tfds' or 'folder'.")


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, variant="demo", canvas=DEMO_CANVAS, coco="tfds", batch=16,
                             groups="aspect")
  if arg.variant != "demo" and arg.variant not in {**BACKBONES, **ZOO}:
    raise config_lib.ConfigError(f"variant={arg.variant!r}: choose 'demo' or one of "
                                 f"{sorted(BACKBONES)} or of the zoo {sorted(ZOO)}.")
  demo = arg.variant == "demo"
  if arg.canvas % 32:
    raise config_lib.ConfigError(f"canvas={arg.canvas}: must be a multiple of 32.")
  if arg.groups not in ("aspect", "single"):
    raise config_lib.ConfigError(f"groups={arg.groups!r}: choose 'aspect' or 'single'.")
  c = config_lib.base_config()
  c.task.name = "detection"
  c.model.name = "retinanet"
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.weight_decay_exclude = ""  # mmdet 2.13 decays every parameter.
  c.schedule.name = "step"
  c.schedule.decay_factor = 0.1
  c.schedule.warmup_start_factor = 0.001
  c.evaluators = {"coco": {"kind": "coco", "num_pictures": 8}}
  c.data.train_drop_empty = True  # mmdet's filter_empty_gt: train on annotated images only.

  if demo:
    c.data.name, c.data.train_split, c.data.eval_split = "shapes_demo", "train", "val"
    classes, max_boxes = 6, 16
    if arg.groups == "aspect":
      short = demo_short_side(arg.canvas)
      canvas, c.data.canvases = None, ((short, arg.canvas), (arg.canvas, short))
      resize = f"resize_keep_ratio({short}, {arg.canvas})"
    else:
      canvas = (arg.canvas, arg.canvas)
      resize = f"resize_keep_ratio({arg.canvas}, {arg.canvas})"
    c.data.batch_size = 8
    c.data.eval_batch_size = 40
    c.model.backbone = "pvt_tiny"
    c.model.backbone_args = dict(DEMO_BACKBONE)
    c.model.fpn_features = 64
    c.model.head_features = 64
    c.model.head_convs = DEMO_HEAD_CONVS
    c.model.head_init_std = 0.02  # mmdet's 0.01 x sqrt(256 / 64): same signal as 256 wide.
    c.task.octave_base_scale = 2.0  # Anchors of 16-406 px for objects of 5-190 px.
    c.optimizer.learning_rate = 1e-3
    c.optimizer.grad_clip_norm = 1.0
    c.schedule.warmup_steps = 100
    c.schedule.boundaries = (8 / 12, 11 / 12)
    c.total_epochs = 15.0  # 3,765 steps (251 per epoch: each canvas group fills its last batch).
    c.log_every_steps = 50
    c.checkpoint_every_steps = 250
  else:
    _coco_data(c, arg.coco)
    classes, max_boxes = 80, 100
    if arg.groups == "aspect":
      canvas, c.data.canvases = None, COCO_CANVASES
    else:
      canvas = COCO_SINGLE_CANVAS
    resize = "resize_keep_ratio(800, 1333)"
    c.data.batch_size = arg.batch
    c.data.eval_batch_size = 16
    c.data.num_workers = 8
    if arg.variant in ZOO:
      c.model.backbone, recipe = ZOO[arg.variant]
      if recipe == "sgd":
        _r50_recipe(c, arg.batch)
        c.optimizer.groups = ()  # frozen_stages is ResNet's.
      else:
        c.optimizer.learning_rate = 1e-4 * arg.batch / 16
      c.model.backbone_args = {"norm_eval": True}
    elif arg.variant == "r50":
      c.model.backbone = BACKBONES[arg.variant]
      _r50_recipe(c, arg.batch)
    else:
      c.model.backbone = BACKBONES[arg.variant]
      c.model.backbone_args = {"drop_path_rate": DETECTION_DROP_PATH[arg.variant]}
      c.optimizer.learning_rate = 1e-4 * arg.batch / 16
    c.schedule.warmup_steps = 500
    c.schedule.boundaries = (8 / 12, 11 / 12)
    c.total_epochs = 12.0
    c.log_every_steps = 50
    c.eval_every_steps = None  # Evaluate at the end (mmdet: every epoch).
    c.checkpoint_every_steps = 2000
    c.init_from.subtree = "params"
    c.init_from.target = "params/backbone"
  c.data.pp_train = _pp(resize, canvas, max_boxes, train=True)
  c.data.pp_eval = _pp(resize, canvas, max_boxes, train=False)
  c.model.num_classes = classes  # The detection task takes it from the model.
  return c


def _r50_recipe(c, batch: int) -> None:
  """mmdet 2.13 retinanet_r50_fpn_1x_coco: torchvision-style ResNet-50 in eval-mode
  BatchNorm, frozen stem + stage 1, SGD 0.01 x batch/16, grad clip 35."""
  c.model.backbone_args = {"norm_eval": True}
  c.optimizer.name = "sgd"
  c.optimizer.momentum = 0.9
  c.optimizer.learning_rate = 0.01 * batch / 16
  c.optimizer.groups = ((R50_FROZEN, {"name": "frozen"}),)
  c.optimizer.grad_clip_norm = 35.0
