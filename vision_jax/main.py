"""Entry point: `python -m vision_jax.main --config=configs/<exp>.py[:args] --workdir=DIR`.

Parses flags only; the work is `vision_jax.train.run(config, workdir, mode)`.
Override any config key with `--config.a.b=value`.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from vision_jax import metrics, train

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints and metrics.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval"],
                          "train: train (resuming if possible); eval: evaluate the newest checkpoint.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  metrics.quiet_library_logs()
  result = train.run(_CONFIG.value, _WORKDIR.value, mode=_MODE.value)
  logging.info("Final: %s", result)
  print({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()})


if __name__ == "__main__":
  app.run(main)
