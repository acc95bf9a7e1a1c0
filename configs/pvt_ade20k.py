r"""Semantic FPN with a Pyramid Vision Transformer backbone on ADE20K. The
experiment is configs/semantic_fpn/ade20k.py (arguments, recipe and results:
configs/semantic_fpn/README.md).

  python -m vision_jax.main --config=configs/pvt_ade20k.py            # the embedded demo
  python -m vision_jax.main --config=configs/pvt_ade20k.py:variant=small ...
"""
import os

from vision_jax import config as config_lib

FAMILY_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "semantic_fpn", "ade20k.py")


def get_config(arg=None):
  return config_lib.load(FAMILY_CONFIG + (f":{arg}" if arg else ""))
