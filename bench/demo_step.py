r"""The main-job demo's train step under recipe variants (canvas, head convs), ms per step.

  . .venv/bin/activate
  python bench/demo_step.py --steps 12 --reps 3

Each variant is the demo config (configs/pvt_coco.py) with its model changed as named,
trained by the trainer's jitted step (`bench/pvt_step.py`'s `JaxStep`: AdamW, compiled
ahead of time, donated state) on one random batch of 8 images of the variant's canvas
with 1..16 boxes of the demo's 6 classes. After 2 untimed steps, --reps samples of
--steps steps each (a pause before each); the median ms per step is reported, with
XLA's FLOPs per step and the ratio to the first variant (the previous demo's step).
The data pipeline is not part of it (the demo's progress line has the end-to-end
steps/s).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [BENCH, os.path.dirname(BENCH)]  # pvt_step, configs/.
import pvt_step  # pylint: disable=wrong-import-position
from configs import pvt_coco  # pylint: disable=wrong-import-position
from vision_jax import train  # pylint: disable=wrong-import-position

BATCH, BOX_SLOTS, CLASSES = 8, 16, 6
# name -> (canvas height, width, head convs); the first is the reference.
VARIANTS = {"192x192, 4 head convs (previous demo)": (192, 192, 4),
            "160x192, 4 head convs": (160, 192, 4),
            "128x192, 4 head convs": (128, 192, 4),
            "192x192, 2 head convs": (192, 192, 2),
            "128x192, 2 head convs (the demo)": (128, 192, 2)}


def demo_batch(rng: np.random.Generator, height: int, width: int) -> dict:
  """Boxes drawn inside the canvas's min(height, width) square, images of the full canvas."""
  batch = pvt_step.detection_batch(rng, BATCH, min(height, width), BOX_SLOTS, CLASSES)
  batch["image"] = rng.standard_normal((BATCH, height, width, 3), np.float32)
  batch["image/size"] = np.tile([height, width], (BATCH, 1)).astype(np.int32)
  return batch


def time_variant(height: int, width: int, head_convs: int, steps: int, reps: int) -> dict:
  c = pvt_coco.get_config()
  c.model.head_convs = head_convs
  model = train.build_model(c)
  task = train.build_task(c, model)
  step = pvt_step.JaxStep(model, task, demo_batch(np.random.default_rng(0), height, width),
                          c.optimizer.learning_rate, c.optimizer.weight_decay, seed=0)
  step.run(2)
  seconds = []
  for _ in range(reps):
    time.sleep(pvt_step.PAUSE_S)
    seconds.append(step.run(steps) / steps)
  step.check_finite()
  return {"ms": 1e3 * statistics.median(seconds), "gflop": step.flops / 1e9}


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--steps", type=int, default=12)
  p.add_argument("--reps", type=int, default=3)
  args = p.parse_args(argv)
  results = {}
  print(f"{'variant':<40} {'ms/step':>8} {'GFLOP':>7} {'ratio':>6}")
  for name, (h, w, convs) in VARIANTS.items():
    r = results[name] = time_variant(h, w, convs, args.steps, args.reps)
    ratio = r["ms"] / next(iter(results.values()))["ms"]
    print(f"{name:<40} {r['ms']:8.1f} {r['gflop']:7.2f} {ratio:6.2f}", flush=True)
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
