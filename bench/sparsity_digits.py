r"""The sparse-training experiments of configs/sparsity/README.md on the digits:
each arm trained over several seeds with configs/sparsity/digits.py, one
table of test accuracy (mean ± std over seeds), non-zeros and FLOPs.

  python bench/sparsity_digits.py --experiment all --json /tmp/sparsity_digits.json
  python bench/sparsity_digits.py --experiment random --seeds 0 1 2 --epochs 10
  python bench/sparsity_digits.py --experiment zhu_gupta   # large-sparse vs small-dense
  python bench/sparsity_digits.py --experiment dst         # GraNet vs GMP vs RigL
  python bench/sparsity_digits.py --experiment sift        # Sparse-IFT vs dense
  python bench/sparsity_digits.py --experiment ap          # AP beside IMP and GMP

Each arm is a config argument string; --arms overrides the experiment's list.
"""
import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "sparsity" / "digits.py"

EXPERIMENTS = {
    # Liu et al. 2022: random ERK vs uniform at equal density, and dense.
    "random": ["method=dense", *[f"method={m},density={d}" for d in (0.5, 0.2, 0.1)
                                 for m in ("erk", "uniform")]],
    # Zhu & Gupta 2017: a width-16 net at 90% vs a dense net with as many
    # non-zeros (width 16 sqrt(0.1) ~ 5).
    "zhu_gupta": ["method=gmp,density=0.1", "method=dense,width=5", "method=dense"],
    # Dynamic sparse training at 90% / 95%.
    "dst": [f"method={m},density={d}" for d in (0.1, 0.05) for m in ("granet", "gmp", "rigl")],
    # AP beside IMP (rewinding to init) and beside GMP, at 80%.
    "ap": [f"method={m},density=0.2" for m in ("imp", "imp_ap", "gmp", "gmp_ap")],
    # Sparse-IFT at s = 0.5 / 0.75 against the dense network of equal FLOPs.
    "sift": ["method=dense", *[f"method=sift_{f},density={d}" for d in (0.5, 0.25)
                               for f in ("wide", "parallel")]],
}


def run_arm(arm: str, seed: int, epochs: float, workdir: str) -> dict:
  from vision_jax import config as config_lib, train  # pylint: disable=import-outside-toplevel
  config = config_lib.load(f"{CONFIG}:{arm},seed={seed},epochs={epochs}")
  start = time.time()
  result = train.run(config, workdir)
  out = {"accuracy": result["eval/top1_accuracy"], "seconds": time.time() - start,
         "sparsity": result.get("train/sparsity/measured", 0.0)}
  table = pathlib.Path(workdir) / "sparsity.json"  # The final masks' counts.
  if table.exists():
    total = json.loads(table.read_text())[-1]
    out.update(nonzero=total["nonzero"], flops=total["sparse_flops"])
  return out


def dense_counts(arm: str) -> dict:
  """Parameters and FLOPs of a dense arm (its model, no training)."""
  import jax  # pylint: disable=import-outside-toplevel
  from vision_jax import config as config_lib, train  # pylint: disable=import-outside-toplevel
  from vision_jax.sparsity import accounting  # pylint: disable=import-outside-toplevel
  s = train.setup(config_lib.load(f"{CONFIG}:{arm}"))
  s.close()
  shapes = jax.eval_shape(s.init_fn)
  variables = {"params": shapes["params"], **shapes["model_state"]}
  rows = accounting.layer_table(shapes["params"], {},
                                accounting.dense_flops(s.model, variables, s.inputs))
  return {"nonzero": rows[-1]["params"], "flops": rows[-1]["flops"]}


def print_table(results: dict, seeds: int) -> None:
  print(f"| arm | test accuracy (mean ± std, {seeds} seeds) | sparsity | "
        "non-zero params | MFLOPs | s/run |")
  print("|---|---|---|---|---|---|")
  for arm, runs in results.items():
    accs = [r["accuracy"] for r in runs]
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    counts = runs[0] if "nonzero" in runs[0] else dense_counts(arm)
    print(f"| {arm} | {statistics.mean(accs):.4f} ± {std:.4f} | {runs[0]['sparsity']:.3f} | "
          f"{counts['nonzero']:,} | {counts['flops'] / 1e6:.2f} | "
          f"{statistics.mean(r['seconds'] for r in runs):.0f} |")


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--experiment", choices=sorted(EXPERIMENTS) + ["all"], default="random",
                      help="'all': every experiment, each distinct arm trained once")
  parser.add_argument("--arms", nargs="*", help="config arguments per arm (overrides)")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--epochs", type=float, default=10.0)
  parser.add_argument("--json", help="write the per-seed results here")
  parser.add_argument("--resume", action="store_true",
                      help="keep the runs already in --json and train only the missing ones")
  args = parser.parse_args()
  experiments = EXPERIMENTS if args.experiment == "all" else {
      args.experiment: EXPERIMENTS[args.experiment]}
  if args.arms:
    experiments = {"arms": args.arms}
  arms = list(dict.fromkeys(a for group in experiments.values() for a in group))
  results = {}
  if args.resume and args.json and os.path.exists(args.json):
    results = json.loads(pathlib.Path(args.json).read_text())
  with tempfile.TemporaryDirectory() as tmp:
    for arm in arms:
      for seed in args.seeds:
        if len(results.get(arm, [])) > args.seeds.index(seed):
          continue
        workdir = os.path.join(tmp, f"{arm.replace(',', '_').replace('=', '-')}_{seed}")
        results.setdefault(arm, []).append(run_arm(arm, seed, args.epochs, workdir))
        print(f"{arm} seed {seed}: {results[arm][-1]}", file=sys.stderr, flush=True)
        if args.json:  # After every run: a partial table survives an interruption.
          pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
  for name, group in experiments.items():
    print(f"\n{name}:\n")
    print_table({arm: results[arm] for arm in group}, len(args.seeds))
  return 0


if __name__ == "__main__":
  sys.exit(main())
