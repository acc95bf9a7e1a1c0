r"""XLA:CPU options on the PVT-Small train step, with enough repetitions to tell them apart.

  . .venv/bin/activate
  python bench/xla_cpu_flags.py --rounds 3 --batch 8 --steps 2 --json /tmp/xla_flags.json

Each option set runs in its own process (XLA reads XLA_FLAGS once, at start-up): the
PVT-Small step of bench/pvt_step.py (`JaxStep`, the trainer's jitted AdamW step) is
compiled, run once untimed, then --steps steps are timed --reps times. The option sets
take turns in --rounds rounds (the order rotates every round), so slow drifts of the
machine fall on all of them; each round's img/s is divided by that round's default run.
Reported per option set: median img/s over the rounds, the range, the median paired
ratio to the default, and how far its results are from the default's: the first step's
loss and gradient norm, and the second step's loss (after one update), as relative
differences. An option is worth a default only if its ratio range stays above 1 and
the differences stay below 1e-5; bit-identical results hint that the option did not
change the compiled program, and then its ratio is the machine's noise.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

OPTION_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "no_thunks": "--xla_cpu_use_thunk_runtime=false",
    "fast_math": "--xla_cpu_enable_fast_math=true",
    # jaxlib 0.10 hands dots (and the elementwise ops around them) to YNNPACK by default:
    "no_ynn": "--xla_cpu_experimental_ynn_fusion_type=",  # XLA's own dot emitters instead.
    "ynn_dots_only": "--xla_cpu_experimental_ynn_fusion_type=LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
}
RESULT_KEYS = ("loss_1", "grad_norm_1", "loss_2")
TOLERANCE = 1e-5


def parse_args(argv):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--rounds", type=int, default=3)
  p.add_argument("--batch", type=int, default=8)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--steps", type=int, default=2, help="timed steps per repetition")
  p.add_argument("--reps", type=int, default=2, help="repetitions per process (median kept)")
  p.add_argument("--only", default=",".join(OPTION_SETS),
                 help="comma-separated option sets to run (default first)")
  p.add_argument("--json", metavar="PATH")
  p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
  return p.parse_args(argv)


def worker(args) -> dict:
  """One process: the step under this process's XLA_FLAGS."""
  import jax
  import numpy as np
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import pvt_step
  from vision_jax.models.backbones import pvt
  from vision_jax.tasks.classification.task import ClassificationTask

  batch = pvt_step.classification_batch(np.random.default_rng(0), args.batch, args.size)
  step = pvt_step.JaxStep(pvt.pvt_small(num_classes=pvt_step.NUM_CLASSES), ClassificationTask(),
                          batch, pvt_step.CLS_LR, pvt_step.CLS_WD, seed=0)
  step.run(1)
  first = {k: float(step.metrics[f"train/{k}"]) for k in ("loss", "grad_norm")}
  step.run(1)
  second_loss = float(step.metrics["train/loss"])  # After one update.
  rates = []
  for _ in range(args.reps):
    time.sleep(0.5)
    rates.append(args.steps * step.images / step.run(args.steps))
  return {"img_s": statistics.median(rates), "compile_s": step.compile_s,
          "loss_1": first["loss"], "grad_norm_1": first["grad_norm"], "loss_2": second_loss,
          "jax": jax.__version__}


def run_one(name: str, flags: str, args) -> dict:
  env = dict(os.environ, XLA_FLAGS=" ".join(f for f in (os.environ.get("XLA_FLAGS", ""), flags)
                                               if f))
  cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--batch", str(args.batch),
         "--size", str(args.size), "--steps", str(args.steps), "--reps", str(args.reps)]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
  if out.returncode:
    raise RuntimeError(f"{name} ({flags!r}) failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
  args = parse_args(argv)
  if args.worker:
    print(json.dumps(worker(args)))
    return {}
  names = args.only.split(",")
  unknown = [n for n in names if n not in OPTION_SETS]
  if unknown or names[0] != "default":
    raise SystemExit(f"--only: {unknown or names}: names from {list(OPTION_SETS)}, default first")
  runs = {n: [] for n in names}
  for r in range(args.rounds):
    order = names[r % len(names):] + names[:r % len(names)]
    for name in order:
      res = run_one(name, OPTION_SETS[name], args)
      runs[name].append(res)
      print(f"round {r + 1} {name:<11} {res['img_s']:6.2f} img/s (compile {res['compile_s']:.0f}s)",
            flush=True)
  summary = {}
  base = runs["default"]
  for name in names:
    rates = [x["img_s"] for x in runs[name]]
    ratios = [x["img_s"] / b["img_s"] for x, b in zip(runs[name], base)]
    diffs = {k: max(abs(x[k] - base[0][k]) / abs(base[0][k]) for x in runs[name])
             for k in RESULT_KEYS}
    summary[name] = {"flags": OPTION_SETS[name], "img_s": statistics.median(rates),
                     "min": min(rates), "max": max(rates), "ratio": statistics.median(ratios),
                     "ratio_min": min(ratios), "ratio_max": max(ratios), "rel_diff": diffs,
                     "runs": runs[name]}
  print(f"\nPVT-Small train step, batch {args.batch}, {args.size}px, {args.rounds} rounds "
        f"(one process each) x {args.reps} x {args.steps} steps; ratio = img/s / the same "
        "round's default")
  print(f"{'options':<11} {'img/s':>6} {'range':>15} {'ratio':>6} {'ratio range':>14} "
        f"{'max rel. diff of results':>25}")
  for name, s in summary.items():
    diff = max(s["rel_diff"].values())
    verdict = "" if name == "default" else (
        "  helps" if s["ratio_min"] > 1 and diff < TOLERANCE else "")
    if name != "default" and diff == 0:
      verdict += "  (bit-identical results: likely the same program)"
    print(f"{name:<11} {s['img_s']:6.2f} [{s['min']:5.2f}, {s['max']:5.2f}] {s['ratio']:6.3f} "
          f"[{s['ratio_min']:5.3f}, {s['ratio_max']:5.3f}] {diff:25.1e}{verdict}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump({"args": vars(args), "summary": summary}, f, indent=1)
  return summary


if __name__ == "__main__":
  main(sys.argv[1:])
