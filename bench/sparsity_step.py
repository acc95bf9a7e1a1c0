r"""Train-step cost of the sparsity methods against the dense step, in one run.

  . .venv/bin/activate
  python bench/sparsity_step.py --models resnet50,pvt_small --batch 8 --steps 1 --reps 3

For each model (ResNet-50 with SGD, PVT-Small with AdamW; 1000 classes, random
--size images, bench/pvt_step.py's `JaxStep`: the trainer's jitted, donated step)
the arms are
  dense        no transform;
  <method>     the `sparsity` transform at density 0.1 whose masks never change
               in the timed steps (updates start after them): the steps that only
               apply masks (the <= 5% overhead target);
  <method>+up  the same with a mask update at every step: the cost of one prune
               (GMP) or drop-and-grow (RigL) step.
Repetitions alternate the arms (pvt_step.py's `interleaved`); reported: median
img/s and the median paired ratio against dense.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pylint: disable=wrong-import-position
from pvt_step import JaxStep, classification_batch, interleaved, paired_ratio, summary
from vision_jax import models
from vision_jax.tasks.classification.task import ClassificationTask

RECIPES = {"resnet50": ("sgd", 0.1, 1e-4), "pvt_small": ("adamw", 5e-4, 0.05)}
FAR = 10**9  # A first mask update no timed step reaches.
METHODS = {
    "static": {"method": "static", "distribution": "erk"},
    "gmp": {"method": "gmp", "begin_steps": FAR, "end_steps": FAR + 1, "frequency_steps": 1},
    "gmp+up": {"method": "gmp", "begin_steps": 0, "end_steps": FAR, "frequency_steps": 1},
    "rigl": {"method": "rigl", "begin_steps": FAR, "end_steps": FAR + 1, "frequency_steps": 1},
    "rigl+up": {"method": "rigl", "begin_steps": 0, "end_steps": FAR, "frequency_steps": 1},
}


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default="resnet50,pvt_small")
  p.add_argument("--methods", default=",".join(METHODS))
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--steps", type=int, default=1, help="timed steps per repetition")
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--warmup", type=int, default=1)
  p.add_argument("--json", metavar="PATH")
  return p.parse_args(argv)


def bench_model(name: str, args, rng) -> dict:
  optimizer, lr, wd = RECIPES[name]
  model = models.MODELS.get(name)(num_classes=1000)
  batch = classification_batch(rng, args.batch, args.size)
  task = ClassificationTask()
  runners = {"dense": JaxStep(model, task, batch, lr, wd, 0, optimizer)}
  for arm in args.methods.split(","):
    spec = {"name": "sparsity", "density": 0.1, **METHODS[arm]}
    runners[arm] = JaxStep(model, task, batch, lr, wd, 0, optimizer, (spec,))
  for runner in runners.values():
    runner.run(args.warmup)
  samples = interleaved(runners, "run", args.steps, args.reps)
  out = {arm: {**summary(samples[arm]), "compile_s": runners[arm].compile_s} for arm in runners}
  for arm in runners:
    out[arm]["vs_dense"] = paired_ratio(samples[arm], samples["dense"])
    runners[arm].check_finite()
  return out


def main(argv=None) -> dict:
  args = parse_args(argv)
  rng = np.random.default_rng(0)
  results = {name: bench_model(name, args, rng) for name in args.models.split(",")}
  print(f"batch {args.batch} at {args.size}px, {args.steps} step(s) x {args.reps} reps")
  print(f"{'model':<10} {'arm':<9} {'img/s':>7} {'vs dense':>9} {'step overhead':>14} {'CPU':>5}")
  for name, arms in results.items():
    for arm, r in arms.items():
      print(f"{name:<10} {arm:<9} {r['img_s']:>7.2f} {r['vs_dense']:>8.3f}x "
            f"{100 * (1 / r['vs_dense'] - 1):>13.1f}% {100 * r['cpu_share']:>4.0f}%")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({n: {a: {k: v for k, v in r.items() if k != "samples"} for a, r in arms.items()}
                 for n, arms in results.items()}, f, indent=1)
  return results


if __name__ == "__main__":
  main()
