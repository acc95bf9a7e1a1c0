r"""Train-step throughput of the backbone zoo in vision_jax, against timm in PyTorch.

  . .venv/bin/activate
  python bench/zoo_step.py --models vovnet39a,ese_vovnet19b_dw --steps 1 --reps 3
  python bench/zoo_step.py --json /tmp/zoo_step.json       # every family, default sizes
  python bench/zoo_step.py --models emo2_1m --emo-repo /path/to/EMOv2   # official EMOv2
  python bench/zoo_step.py --flops-only                    # forward GMACs only, seconds

For each model: one classification train step (forward + backward + SGD with
momentum 0.9, no weight decay, 1000 classes, --batch random images at the model's
default size: Inception 299, VoVNet 224 (ese_vovnet57b 256, its timm default),
EMOv2 224, Terminator 32) in
  (a) vision_jax: the registered model, `tasks.classification.ClassificationTask`,
      the trainer's SGD (`optim.builder`), `steps.make_train_step` jitted with
      donation and compiled ahead of time (bench/pvt_step.py's `JaxStep`);
  (b) PyTorch, eager: the same architecture from timm (`timm.create_model`) in
      train mode, cross-entropy, `torch.optim.SGD(momentum=0.9)`. EMOv2 is not in
      timm: with --emo-repo, the official `model/lib_emo/emo2.py` of an EMOv2
      checkout is the reference; Terminator has no reference implementation.
After --warmup untimed steps, repetitions alternate the two sides (pvt_step.py's
`interleaved`); reported: median img/s and the median paired ratio.

Forward FLOPs per image: XLA's cost analysis of the jitted eval-mode forward at
batch 1, and `torch.utils.flop_counter.FlopCounterMode` on the reference forward,
both shown as GMACs (FLOPs / 2), beside the figure the paper or timm quotes.
"""
import argparse
import json
import os
import sys
import time
import types

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# pylint: disable=wrong-import-position
from pvt_step import (CORES, BUSY_SHARE, JaxStep, classification_batch, flops_of,
                      interleaved, paired_ratio, summary)
from vision_jax import models
from vision_jax.tasks.classification.task import ClassificationTask

NUM_CLASSES = 1000
LR = 0.1
# name -> (default input side, timm name or None, quoted GMACs at that side, source).
ZOO = {
    "inception_v4": (299, "inception_v4", 12.28, "timm results"),
    "inception_resnet_v2": (299, "inception_resnet_v2", 13.18, "timm results"),
    "vovnet39a": (224, "vovnet39a", None, ""),
    "vovnet57a": (224, "vovnet57a", None, ""),
    "ese_vovnet19b_dw": (224, "ese_vovnet19b_dw", None, ""),
    "ese_vovnet39b": (224, "ese_vovnet39b", None, ""),
    "ese_vovnet57b": (256, "ese_vovnet57b", None, ""),
    "emo2_1m": (224, None, 0.285, "EMOv2 training log, GFLOPs"),
    "emo2_2m": (224, None, 0.487, "EMOv2 training log, GFLOPs"),
    "emo2_5m": (224, None, 1.035, "EMOv2 training log, GFLOPs"),
    "terminator": (32, None, None, ""),
}
OFFICIAL_EMO = {"emo2_1m": "EMO2_1M_k5_hybrid", "emo2_2m": "EMO2_2M_k5_hybrid",
                "emo2_5m": "EMO2_5M_k5_hybrid"}


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--models", default=",".join(ZOO), help=f"comma-separated, from {list(ZOO)}")
  p.add_argument("--batch", type=int, default=32, help="images per train step")
  p.add_argument("--steps", type=int, default=1, help="timed steps per repetition")
  p.add_argument("--reps", type=int, default=3, help="timed repetitions (median reported)")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
  p.add_argument("--threads", type=int, default=CORES, help="torch.set_num_threads")
  p.add_argument("--emo-repo", metavar="PATH", help="an EMOv2 checkout: its official model "
                 "is the reference for emo2_*")
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch references")
  p.add_argument("--flops-only", action="store_true", help="only the forward GMACs, no timing")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", metavar="PATH", help="write the numbers here")
  args = p.parse_args(argv)
  unknown = sorted(set(args.models.split(",")) - set(ZOO))
  if unknown:
    p.error(f"unknown models {unknown}; choose from {list(ZOO)}")
  return args


def reference_model(name: str, args):
  """The PyTorch reference of `name` (train mode), or None."""
  import torch  # pylint: disable=import-outside-toplevel
  torch.set_num_threads(args.threads)
  torch.manual_seed(args.seed)
  timm_name = ZOO[name][1]
  if timm_name:
    import timm  # pylint: disable=import-outside-toplevel
    return timm.create_model(timm_name, num_classes=NUM_CLASSES).train()
  if name in OFFICIAL_EMO and args.emo_repo:
    return getattr(official_emo2(args.emo_repo), OFFICIAL_EMO[name])(
        num_classes=NUM_CLASSES).train()
  return None


def official_emo2(checkout: str):
  """model/lib_emo/emo2.py of an EMOv2 checkout. Its basic_modules.py imports
  cv2, which the models never use: an empty module stands in when it is absent."""
  try:
    import cv2  # pylint: disable=import-outside-toplevel,unused-import
  except ImportError:
    sys.modules["cv2"] = types.ModuleType("cv2")
  sys.path.insert(0, os.path.abspath(checkout))
  from model.lib_emo import emo2  # pylint: disable=import-outside-toplevel,import-error
  return emo2


def logits_of(output):
  """timm returns logits; the official EMOv2 a dict with 'out'."""
  return output["out"] if isinstance(output, dict) else output


class TorchStep:
  """A PyTorch classifier trained by SGD (momentum 0.9) on one fixed batch."""

  def __init__(self, model, batch: dict):
    import torch  # pylint: disable=import-outside-toplevel
    self.torch, self.model = torch, model
    self.params = sum(p.numel() for p in model.parameters())
    self.opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    self.x = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
    self.y = torch.from_numpy(batch["labels"].argmax(-1))
    self.images = len(self.x)

  def run(self, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      loss = self.torch.nn.functional.cross_entropy(logits_of(self.model(self.x)), self.y)
      self.opt.zero_grad(set_to_none=True)
      loss.backward()
      self.opt.step()
    return time.perf_counter() - start

  def forward_gmacs(self) -> float:
    """FlopCounterMode's FLOPs / 2 of one eval-mode image."""
    from torch.utils.flop_counter import FlopCounterMode  # pylint: disable=import-outside-toplevel
    self.model.eval()
    with self.torch.no_grad(), FlopCounterMode(display=False) as counter:
      self.model(self.x[:1])
    self.model.train()
    return counter.get_total_flops() / 2e9


def jax_forward_gmacs(model, size: int) -> float:
  """XLA's FLOPs / 2 of the compiled eval-mode forward of one image."""
  x = jnp.zeros((1, size, size, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False)[0])
  return flops_of(forward.lower(variables, x).compile()) / 2e9


def gmacs_only(name: str, args) -> dict:
  """The forward GMACs of both sides, nothing timed."""
  size = ZOO[name][0]
  out = {"size": size, "gmacs": {"vision_jax": jax_forward_gmacs(
      models.MODELS.get(name)(num_classes=NUM_CLASSES), size)},
         "quoted_gmacs": ZOO[name][2], "quoted_source": ZOO[name][3]}
  reference = None if args.no_torch else reference_model(name, args)
  if reference is not None:
    x = np.zeros((1, size, size, 3), np.float32)
    out["gmacs"]["pytorch"] = TorchStep(reference, {"image": x, "labels": np.eye(1)}).forward_gmacs()
  return out


def bench_model(name: str, args, rng) -> dict:
  if args.flops_only:
    return gmacs_only(name, args)
  size = ZOO[name][0]
  model = models.MODELS.get(name)(num_classes=NUM_CLASSES)
  batch = classification_batch(rng, args.batch, size)
  runners = {"vision_jax": JaxStep(model, ClassificationTask(), batch, LR, 0.0, args.seed,
                                   optimizer="sgd")}
  out = {"size": size, "batch": args.batch, "params": {"vision_jax": runners["vision_jax"].params},
         "compile_s": runners["vision_jax"].compile_s,
         "gmacs": {"vision_jax": jax_forward_gmacs(model, size)},
         "quoted_gmacs": ZOO[name][2], "quoted_source": ZOO[name][3]}
  reference = None if args.no_torch else reference_model(name, args)
  if reference is not None:
    runners["pytorch"] = TorchStep(reference, batch)
    out["params"]["pytorch"] = runners["pytorch"].params
    out["gmacs"]["pytorch"] = runners["pytorch"].forward_gmacs()
  for runner in runners.values():
    runner.run(args.warmup)
  rates = interleaved(runners, "run", args.steps, args.reps)
  runners["vision_jax"].check_finite()
  out.update({side: summary(r) for side, r in rates.items()})
  if "pytorch" in rates:
    out["ratio"] = paired_ratio(rates["vision_jax"], rates["pytorch"])
  return out


def print_table(results: dict) -> None:
  a = results["args"]
  if a["flops_only"]:
    print("\nforward GMACs (FLOPs / 2) per image, eval mode")
  else:
    print(f"\nbatch {a['batch']}, {a['steps']} timed steps x {a['reps']} repetitions; median "
          "img/s; GMACs = forward FLOPs / 2 per image")
    print(f"{'model':<20} {'px':>4} {'params':>12} {'jax img/s':>9} {'torch img/s':>11} "
          f"{'ratio':>6} {'CPU':>5} {'GMACs jax':>9} {'torch':>6} {'quoted':>7}")
  for name, r in results["models"].items():
    if "vision_jax" not in r:  # --flops-only
      torch_gmacs = f"{r['gmacs']['pytorch']:6.2f}" if "pytorch" in r["gmacs"] else "-"
      print(f"{name:<20} {r['size']:>4} GMACs: vision_jax {r['gmacs']['vision_jax']:.3f}, "
            f"PyTorch {torch_gmacs}, quoted {r['quoted_gmacs'] or '-'} {r['quoted_source']}")
      continue
    torch_rate = f"{r['pytorch']['img_s']:11.2f}" if "pytorch" in r else f"{'-':>11}"
    ratio = f"{r['ratio']:5.2f}x" if "ratio" in r else f"{'-':>6}"
    torch_gmacs = f"{r['gmacs']['pytorch']:6.2f}" if "pytorch" in r["gmacs"] else f"{'-':>6}"
    quoted = f"{r['quoted_gmacs']:7.3f}" if r["quoted_gmacs"] else f"{'-':>7}"
    shares = [r[s]["cpu_share"] for s in ("vision_jax", "pytorch") if s in r]
    print(f"{name:<20} {r['size']:>4} {r['params']['vision_jax']:>12,} "
          f"{r['vision_jax']['img_s']:9.2f} {torch_rate} {ratio} {min(shares):5.0%} "
          f"{r['gmacs']['vision_jax']:9.2f} {torch_gmacs} {quoted}")
    if min(shares) < BUSY_SHARE:
      print(f"  WARNING: {name} ran with {min(shares):.0%} of the cores: timings distorted.")


def main(argv=None) -> dict:
  args = parse_args(argv)
  rng = np.random.default_rng(args.seed)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}, "
        f"{CORES} cores, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  results = {"args": vars(args), "jax": jax.__version__, "cores": CORES, "models": {}}
  for name in args.models.split(","):
    results["models"][name] = r = bench_model(name, args, rng)
    if args.flops_only:
      continue
    print(f"{name}: vision_jax {r['vision_jax']['img_s']:.2f} img/s"
          + (f", pytorch {r['pytorch']['img_s']:.2f} img/s, ratio {r['ratio']:.2f}x"
             if "ratio" in r else "") + f" (compiled in {r['compile_s']:.0f} s)", flush=True)
    if args.json:  # After every model, so a failure keeps what was measured.
      with open(args.json, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
  print_table(results)
  if args.json:
    print(f"wrote {args.json}")
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
