r"""The main job: RetinaNet with a Pyramid Vision Transformer backbone on COCO.
This file keeps the command users know; the experiment is
configs/retinanet/coco.py (arguments, recipes and results: configs/retinanet/README.md).

  python -m vision_jax.main --config=configs/pvt_coco.py            # the embedded demo
  python -m vision_jax.main --config=configs/pvt_coco.py:variant=small ...
"""
import os

from vision_jax import config as config_lib

FAMILY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "retinanet", "coco.py")


def get_config(arg=None):
  return config_lib.load(FAMILY_CONFIG + (f":{arg}" if arg else ""))
