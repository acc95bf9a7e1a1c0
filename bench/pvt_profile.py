r"""Where the PVT-Small train step spends its time: XLA's per-op profile and
PyTorch's, side by side, in the same categories.

  . .venv/bin/activate
  python bench/pvt_profile.py --batch 16 --steps 2

Both sides are bench/pvt_step.py's (the same batch, model, loss and AdamW).
XLA: `jax.profiler.trace` of --steps compiled steps; each executed thunk is
matched to its HLO instruction, whose metadata names the Flax module and the
JAX primitive (`jvp(...)`: forward, `transpose(jvp(...))`: backward), which
gives its category. PyTorch: `torch.profiler` self CPU time per aten op,
categorised by op name. Times are per step; a category's share is of that
side's total op time (the sum over threads can exceed the wall time).
"""
import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pvt_step  # noqa: E402  # pylint: disable=wrong-import-position
from vision_jax.models.backbones import pvt  # noqa: E402
from vision_jax.tasks.classification.task import ClassificationTask  # noqa: E402

CATEGORIES = ("linear layers", "attention matmuls", "patchify convs", "layernorm", "softmax",
              "gelu", "optimizer", "other")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = .*?metadata=\{op_name=\"([^\"]*)\"")


def xla_category(op_name: str) -> str:
  """Category of an HLO instruction from its metadata op_name (module path/primitive)."""
  if "PVT" not in op_name:
    return "optimizer" if re.search(r"adam|optax|tree_map|apply_updates|add_decayed", op_name) \
        else "other"
  path, primitive = op_name.rsplit("/", 1) if "/" in op_name else ("", op_name)
  if re.search(r"patch_embed\d+/proj|attn/sr", path):
    return "patchify convs"
  if re.search(r"norm\d?(/|$)", path) and not path.endswith("attn"):
    return "layernorm"
  if re.search(r"/(q|kv|proj|fc1|fc2|head)(/|$)", path) and "dot_general" in primitive:
    return "linear layers"
  if path.endswith("attn") and ("dot_general" in primitive or "einsum" in op_name):
    return "attention matmuls"
  if path.endswith("attn") and re.search(r"exp|reduce_max|reduce_sum|div|sub|softmax|max", primitive):
    return "softmax"
  if "/mlp" in path and re.search(r"erf|gelu|tanh|mul|add|pow", primitive):
    return "gelu"
  return "other"


def torch_category(name: str) -> str:
  n = name.lower()
  if "adam" in n or n.startswith("optimizer"):
    return "optimizer"
  if re.search(r"aten::(addmm|mm|linear)$", n):
    return "linear layers"
  if re.search(r"aten::(bmm|baddbmm|matmul)$", n):
    return "attention matmuls"
  if "convolution" in n or "conv2d" in n:
    return "patchify convs"
  if "layer_norm" in n:
    return "layernorm"
  if "softmax" in n:
    return "softmax"
  if "gelu" in n:
    return "gelu"
  return "other"


def xla_profile(runner, steps: int) -> tuple[dict, list]:
  """(ms per step by category, [(ms, thunk, category, op_name)] top ops)."""
  names = {}
  for line in runner.step.as_text().splitlines():
    m = _INSTRUCTION.match(line)
    if m:
      names[m.group(1)] = m.group(2)
  with tempfile.TemporaryDirectory() as tmp:
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      runner.run(steps)
    path = glob.glob(os.path.join(tmp, "**", "perfetto_trace.json.gz"), recursive=True)[0]
    with gzip.open(path) as f:
      trace = json.load(f)
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  per_op = collections.defaultdict(float)
  for e in events:
    if e.get("ph") == "X" and e.get("name") in names:
      per_op[e["name"]] += e.get("dur", 0) / 1e3 / steps
  by_cat = collections.defaultdict(float)
  top = []
  for op, ms in per_op.items():
    cat = xla_category(names[op])
    by_cat[cat] += ms
    top.append((ms, op, cat, names[op]))
  return dict(by_cat), sorted(top, reverse=True)


def torch_profile(runner, steps: int) -> tuple[dict, list]:
  import torch  # pylint: disable=import-outside-toplevel
  with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
    runner.run(steps)
  by_cat = collections.defaultdict(float)
  top = []
  for item in prof.key_averages():
    ms = item.self_cpu_time_total / 1e3 / steps
    cat = torch_category(item.key)
    by_cat[cat] += ms
    top.append((ms, item.key, cat, f"{item.count // steps} calls"))
  return dict(by_cat), sorted(top, reverse=True)


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--size", type=int, default=224)
  p.add_argument("--steps", type=int, default=2, help="profiled steps (after one untimed)")
  p.add_argument("--top", type=int, default=15, help="slowest ops listed per side")
  p.add_argument("--json", metavar="PATH")
  args = p.parse_args(argv)
  print(f"jax {jax.__version__}, {pvt_step.CORES} cores, XLA_FLAGS="
        f"{os.environ.get('XLA_FLAGS', '')!r}")
  batch = pvt_step.classification_batch(np.random.default_rng(0), args.batch, args.size)
  jx = pvt_step.JaxStep(pvt.pvt_small(num_classes=pvt_step.NUM_CLASSES), ClassificationTask(),
                        batch, pvt_step.CLS_LR, pvt_step.CLS_WD, 0)
  th = pvt_step.TorchStep(batch, pvt_step.CORES, 0)
  for runner in (jx, th):
    runner.run(1)
  wall = {"xla": jx.run(args.steps) / args.steps * 1e3, "pytorch": th.run(args.steps) / args.steps * 1e3}
  sides = {"xla": xla_profile(jx, args.steps), "pytorch": torch_profile(th, args.steps)}
  print(f"\nPVT-Small train step, batch {args.batch}, {args.size}px: wall {wall['xla']:.0f} ms (XLA) "
        f"vs {wall['pytorch']:.0f} ms (PyTorch), unprofiled")
  print(f"{'category':<20} {'XLA ms':>9} {'share':>6} {'PyTorch ms':>11} {'share':>6} {'XLA/PT':>7}")
  totals = {k: sum(v[0].values()) for k, v in sides.items()}
  for cat in CATEGORIES:
    x, t = sides["xla"][0].get(cat, 0.0), sides["pytorch"][0].get(cat, 0.0)
    print(f"{cat:<20} {x:9.1f} {x / totals['xla']:6.1%} {t:11.1f} {t / totals['pytorch']:6.1%} "
          f"{x / t if t else float('nan'):7.2f}")
  print(f"{'all ops':<20} {totals['xla']:9.1f} {'':>6} {totals['pytorch']:11.1f}")
  for side, (_, top) in sides.items():
    print(f"\n{side}: the {args.top} slowest ops (ms per step)")
    for ms, op, cat, detail in top[:args.top]:
      print(f"  {ms:8.1f}  {op[:40]:<40} {cat:<18} {detail[-70:]}")
  result = {"wall_ms": wall, "categories": {k: v[0] for k, v in sides.items()},
            "top": {k: v[1][:args.top] for k, v in sides.items()}}
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  return result


if __name__ == "__main__":
  main(sys.argv[1:])
