"""configs/pvt_coco.py: the COCO recipe's values, a clear error without COCO,
and a short end-to-end demo run (shapes_demo -> RetinaNet-PVT -> COCO eval)."""
import json
import os

import pytest

from vision_jax import config as config_lib, metrics, train
from vision_jax.data import shapes, sources
from configs import pvt_coco
from configs.retinanet import coco


@pytest.mark.parametrize("variant, backbone, drop_path", [
    ("tiny", "pvt_tiny", 0.1), ("small", "pvt_small", 0.1), ("medium", "pvt_medium", 0.0),
    ("large", "pvt_large", 0.0)])
def test_coco_variants_are_the_mmdet_1x_recipe(variant, backbone, drop_path):
  c = pvt_coco.get_config(f"variant={variant}")
  config_lib.validate(c)
  assert (c.model.backbone, c.model.backbone_args["drop_path_rate"]) == (backbone, drop_path)
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.weight_decay) == ("adamw", 1e-4, 1e-4)
  assert c.optimizer.weight_decay_exclude == "" and c.optimizer.grad_clip_norm is None
  assert (c.data.batch_size, c.total_epochs, c.schedule.warmup_steps) == (16, 12.0, 500)
  assert c.schedule.boundaries == (8 / 12, 11 / 12) and c.schedule.warmup_start_factor == 0.001
  assert "resize_keep_ratio(800, 1333)" in c.data.pp_train and "flip_lr_boxes(0.5)" in c.data.pp_train
  assert "flip" not in c.data.pp_eval and "coco_objects(drop_crowd=False)" in c.data.pp_eval
  assert c.init_from.target == "params/backbone"
  # Landscape and portrait batches on canvases of their own (mmdet's GroupSampler).
  assert c.data.canvases == ((800, 1344), (1344, 800))
  assert "|pad_to_canvas|" in c.data.pp_train and "|pad_to_canvas|" in c.data.pp_eval
  single = pvt_coco.get_config(f"variant={variant},groups=single")
  assert single.data.canvases == () and "|pad_to(1344, 1344)|" in single.data.pp_eval
  config_lib.validate(single)
  # mmdet's filter_empty_gt, and NMS over every candidate pair (no cap).
  assert c.data.train_drop_empty and "max_nms_candidates" not in c.task


def test_r50_variant_is_mmdet_retinanet_r50_fpn_1x_and_the_pointer_is_the_family_file():
  c = pvt_coco.get_config("variant=r50,batch=8")
  config_lib.validate(c)
  assert c.to_dict() == coco.get_config("variant=r50,batch=8").to_dict()
  assert (c.model.name, c.model.backbone, c.model.backbone_args.to_dict()) == (
      "retinanet", "resnet50", {"norm_eval": True})
  assert (c.optimizer.name, c.optimizer.learning_rate, c.optimizer.momentum,
          c.optimizer.weight_decay, c.optimizer.grad_clip_norm) == ("sgd", 0.005, 0.9, 1e-4, 35.0)
  assert c.optimizer.groups == ((r"backbone/(stem_.*|stage1_.*)", {"name": "frozen"}),)
  assert (c.total_epochs, c.schedule.warmup_steps, c.schedule.boundaries) == (
      12.0, 500, (8 / 12, 11 / 12))
  assert c.model.num_classes == 80 and "num_classes" not in c.task
  assert c.init_from.target == "params/backbone"


def test_coco_without_the_data_fails_before_compute_saying_how_to_prepare(tmp_path):
  c = pvt_coco.get_config("variant=tiny")
  c.data.data_dir = str(tmp_path)
  with pytest.raises(sources.DataMissingError, match="tfds build coco/2017"):
    train.setup(c)
  c = pvt_coco.get_config("variant=tiny,coco=folder")
  c.data.data_dir = str(tmp_path)
  with pytest.raises(sources.DataMissingError, match="instances_train2017.json"):
    train.setup(c)


def test_demo_groups_landscape_and_portrait_images_on_two_thirds_canvases():
  c = pvt_coco.get_config()
  assert c.data.canvases == ((128, 192), (192, 128))
  assert "|resize_keep_ratio(128, 192)|" in c.data.pp_train and "|pad_to_canvas|" in c.data.pp_eval
  assert c.model.head_convs == 2
  assert [coco.demo_short_side(n) for n in (96, 192, 256, 32)] == [64, 128, 160, 32]
  single = pvt_coco.get_config("groups=single")
  assert single.data.canvases == () and "|resize_keep_ratio(192, 192)|" in single.data.pp_train
  assert "|pad_to(192, 192)|" in single.data.pp_eval


def test_bad_arguments_are_named():
  with pytest.raises(config_lib.ConfigError, match="variant='huge'"):
    pvt_coco.get_config("variant=huge")
  with pytest.raises(config_lib.ConfigError, match="canvas=100"):
    pvt_coco.get_config("canvas=100")
  with pytest.raises(config_lib.ConfigError, match="groups='ratio': choose 'aspect' or 'single'"):
    pvt_coco.get_config("groups=ratio")


@pytest.mark.slow
def test_demo_trains_evaluates_and_draws(tmp_path, monkeypatch):
  monkeypatch.setattr(shapes, "SPLITS", {"train": 64, "val": 12})
  c = pvt_coco.get_config("canvas=96")
  c.data.data_dir = str(tmp_path / "data")
  c.data.batch_size = 8
  c.data.eval_batch_size = 8
  c.model.backbone_args = {"embed_dims": (16, 32, 64, 128), "num_heads": (1, 1, 2, 2),
                           "mlp_ratios": (2, 2, 2, 2), "depths": (1, 1, 1, 1),
                           "drop_path_rate": 0.0}
  c.model.fpn_features = c.model.head_features = 32
  c.model.head_convs = 2
  c.total_epochs = 5.0  # 40 steps.
  c.schedule.warmup_steps = 5
  c.log_every_steps = 10
  c.evaluators.coco.num_pictures = 4
  workdir = str(tmp_path / "run")
  result = train.run(c, workdir)
  rows = [r for r in metrics.read_metrics(workdir) if "train/loss" in r]
  assert [r["step"] for r in rows] == [10, 20, 30, 40]
  assert rows[-1]["train/loss"] < 0.8 * rows[0]["train/loss"]
  assert sum(r["data/skipped"] for r in rows) == 0
  # Measured on this run (2-core CPU): AP50 0.0096, AR100 0.050.
  assert result["coco/AP50"] >= 0.005 and result["coco/AR100"] >= 0.025, result
  with open(os.path.join(workdir, "eval", "val_detections.json"), encoding="utf-8") as f:
    detections = json.load(f)
  gt_file = os.path.join(c.data.data_dir, "shapes_demo", shapes.VERSION, "annotations",
                         "instances_val.json")
  with open(gt_file, encoding="utf-8") as f:
    val_ids = {image["id"] for image in json.load(f)["images"]}
  assert len(val_ids) == 12
  assert detections and {d["image_id"] for d in detections} <= val_ids
  assert {d["category_id"] for d in detections} <= set(range(1, 7))  # Original ids 1..6.
  pictures = os.listdir(os.path.join(workdir, metrics.PICTURES_DIR))
  assert pictures == ["coco_detections_40.png"]
