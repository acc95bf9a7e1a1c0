r"""The digits demos' full runs, each against the accuracy its README states:
the ResNet digits demo (>= 0.95), the Poincaré ResNet demo (>= 0.90) and the
GCR demo (GCR >= softmax >= 0.95, linear transfer >= 0.90 on 717 fit examples).

  python bench/demos.py                      # all three
  python bench/demos.py --demo poincare --workdir /tmp/demos

Prints each run's accuracies and wall time; exits 1 if a run misses its bar.
The test suite runs shorter versions of these trainers; these full runs are
the demos' results.
"""
import argparse
import os
import sys
import tempfile
import time

from vision_jax import config as config_lib, train

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


def _run(config_path: str, workdir: str) -> tuple[dict, float]:
  start = time.perf_counter()
  result = train.run(config_lib.load(os.path.join(CONFIGS, config_path)), workdir)
  return result, time.perf_counter() - start


def resnet(workdir: str) -> list[str]:
  result, seconds = _run("resnet/digits.py", workdir)
  accuracy = result["eval/top1_accuracy"]
  print(f"resnet digits demo: top-1 {accuracy:.4f} in {seconds:.0f} s")
  return [] if accuracy >= 0.95 else [f"resnet digits top-1 {accuracy:.4f} < 0.95"]


def poincare(workdir: str) -> list[str]:
  result, seconds = _run("poincare/cifar.py:", workdir)
  accuracy = result["eval/top1_accuracy"]
  print(f"poincare digits demo: top-1 {accuracy:.4f} in {seconds:.0f} s")
  return [] if accuracy >= 0.90 else [f"poincare digits top-1 {accuracy:.4f} < 0.90"]


def gcr(workdir: str) -> list[str]:
  results, seconds = {}, {}
  for head in ("gcr", "softmax"):
    results[head], seconds[head] = _run(f"gcr/imagenet.py:demo,head={head}",
                                        os.path.join(workdir, head))
    print(f"gcr demo, {head} head: top-1 {results[head]['eval/top1_accuracy']:.4f} "
          f"in {seconds[head]:.0f} s")
  g, s = results["gcr"]["eval/top1_accuracy"], results["softmax"]["eval/top1_accuracy"]
  transfer = results["gcr"]["transfer/top1_accuracy"]
  print(f"gcr demo: linear transfer {transfer:.4f} on "
        f"{int(results['gcr']['transfer/fit_examples'])} fit examples")
  failures = [] if g >= s >= 0.95 else [f"gcr {g:.4f} / softmax {s:.4f}: not gcr >= softmax >= 0.95"]
  if transfer < 0.9 or results["gcr"]["transfer/fit_examples"] != 717:
    failures.append(f"gcr transfer {transfer:.4f} (needs >= 0.90 on 717 examples)")
  return failures


DEMOS = {"resnet": resnet, "poincare": poincare, "gcr": gcr}


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--demo", choices=sorted(DEMOS), action="append")
  parser.add_argument("--workdir", default=None, help="default: a temporary directory")
  args = parser.parse_args()
  root = args.workdir or tempfile.mkdtemp(prefix="demos.")
  failures = []
  for name in args.demo or list(DEMOS):
    failures += DEMOS[name](os.path.join(root, name))
  for failure in failures:
    print("FAILED:", failure)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
