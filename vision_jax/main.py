"""Entry point: `python -m vision_jax.main --config=configs/<exp>.py[:args] [--workdir=DIR]`.

Parses flags only; the work is `vision_jax.train.run(config, workdir, mode)`.
Override any config key with `--config.a.b=value`. Without --workdir, runs go
to `workdirs/<config name>[_<args>]` under the current directory.
"""
import os
import re

from absl import app, flags, logging
from ml_collections import config_flags

from vision_jax import metrics, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics "
                               "(default: workdirs/<config name>[_<args>]).")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train: train (resuming if possible); eval: evaluate the newest checkpoint.")
flags.mark_flags_as_required(["config"])


def default_workdir(config_arg: str) -> str:
  """workdirs/pvt_coco for 'configs/pvt_coco.py', workdirs/pvt_coco_variant-small for
  'configs/pvt_coco.py:variant=small', workdirs/gcr_imagenet for
  'configs/gcr/imagenet.py' (the path below configs/, joined by '_')."""
  path, _, args = config_arg.partition(":")
  parts = os.path.normpath(os.path.splitext(path)[0]).split(os.sep)
  below = parts[len(parts) - parts[::-1].index("configs"):] if "configs" in parts else parts[-1:]
  name = "_".join(below)
  if args:
    name += "_" + re.sub(r"[^A-Za-z0-9.]+", "-", args).strip("-")
  return os.path.join("workdirs", name)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  metrics.quiet_library_logs()
  workdir = _WORKDIR.value or default_workdir(flags.FLAGS["config"].serialize().split("=", 1)[1])
  logging.info("Workdir: %s", os.path.abspath(workdir))
  result = train.run(_CONFIG.value, workdir, mode=_MODE.value)
  logging.info("Final: %s", result)
  print({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})


if __name__ == "__main__":
  app.run(main)
