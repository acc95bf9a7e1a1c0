r"""Single ops of the PVT-Small step on XLA:CPU against PyTorch: where the gap is XLA's own.

  . .venv/bin/activate
  python bench/xla_cpu_ops.py --reps 7 --json /tmp/xla_ops.json

Each case is one op of PVT-Small at batch 8 (stage 1: 8 x 56 x 56 = 25,088 tokens of
width 64, MLP width 512; stage 3: 8 x 14 x 14 = 1,568 tokens of width 320), timed as
forward alone and as forward + backward (the gradient of the sum of the outputs with
respect to every input, as a train step needs it):
  matmul      x @ w (a Linear without bias), jnp.dot vs torch.matmul;
  linear      x @ w + b, flax.linen.Dense vs torch.nn.functional.linear;
  layernorm   flax.linen.LayerNorm (epsilon 1e-6, scale and bias) vs F.layer_norm;
  gelu        the exact GELU (vision_jax.layers.activations.gelu) vs F.gelu;
  softmax     over the last axis, jax.nn.softmax vs torch.softmax.
JAX runs each case as one jitted function on device-resident inputs (timed to
`block_until_ready`); PyTorch runs eagerly with every core, as bench/pvt_step.py's
reference does. Both compute in float32 on the same random inputs, and the outputs are
checked to agree (relative max difference printed). The two sides alternate, with a
pause before each sample; medians of --reps samples are reported, and the ratio
PyTorch time / JAX time (above 1: XLA is faster).
"""
import argparse
import json
import os
import statistics
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.layers.activations import gelu

PAUSE_S = 0.2
CORES = len(os.sched_getaffinity(0))
# (case, rows, in width, out width): stage-1 MLP and stage-3 attention shapes of PVT-Small, batch 8.
CASES = (("matmul", 25088, 64, 512), ("matmul", 25088, 512, 64), ("matmul", 1568, 320, 1280),
         ("linear", 25088, 64, 512), ("layernorm", 25088, 64, 64), ("layernorm", 1568, 320, 320),
         ("gelu", 25088, 512, 512), ("softmax", 25088, 49, 49))


def jax_fn(case: str, width_in: int, width_out: int):
  """(function of the inputs, inputs' parameter shapes) for one case."""
  if case == "matmul":
    return (lambda x, w: jnp.dot(x, w)), ((width_in, width_out),)
  if case == "linear":
    dense = nn.Dense(width_out)
    return (lambda x, k, b: dense.apply({"params": {"kernel": k, "bias": b}}, x)), (
        (width_in, width_out), (width_out,))
  if case == "layernorm":
    ln = nn.LayerNorm(epsilon=1e-6)
    return (lambda x, s, b: ln.apply({"params": {"scale": s, "bias": b}}, x)), (
        (width_in,), (width_in,))
  if case == "gelu":
    return (lambda x: gelu(x)), ()
  if case == "softmax":
    return (lambda x: jax.nn.softmax(x, axis=-1)), ()
  raise ValueError(case)


def torch_fn(torch, case: str):
  f = torch.nn.functional
  return {"matmul": lambda x, w: torch.matmul(x, w),
          "linear": lambda x, k, b: f.linear(x, k.t(), b),
          "layernorm": lambda x, s, b: f.layer_norm(x, (x.shape[-1],), s, b, eps=1e-6),
          "gelu": lambda x: f.gelu(x),
          "softmax": lambda x: torch.softmax(x, -1)}[case]


def timed(fn, reps: int) -> list[float]:
  out = []
  for _ in range(reps):
    time.sleep(PAUSE_S)
    start = time.perf_counter()
    fn()
    out.append(time.perf_counter() - start)
  return out


def measure(torch, case: str, rows: int, width_in: int, width_out: int, reps: int) -> dict:
  rng = np.random.default_rng(0)
  fn, shapes = jax_fn(case, width_in, width_out)
  arrays = [rng.standard_normal((rows, width_in), np.float32)]
  arrays += [(rng.standard_normal(s) / (np.sqrt(s[0]) if len(s) == 2 else 1)).astype(np.float32)
             for s in shapes]
  jx = [jax.device_put(a) for a in arrays]
  tx = [torch.from_numpy(a.copy()).requires_grad_(True) for a in arrays]
  tfn = torch_fn(torch, case)
  forward = jax.jit(fn)
  backward = jax.jit(jax.grad(lambda *a: fn(*a).sum(), argnums=tuple(range(len(jx)))))

  def torch_forward():
    with torch.no_grad():
      tfn(*tx)

  def torch_backward():
    for t in tx:
      t.grad = None
    tfn(*tx).sum().backward()

  with torch.no_grad():
    reference = tfn(*tx).numpy()
  diff = float(np.abs(np.asarray(forward(*jx)) - reference).max() / np.abs(reference).max())
  result = {"case": case, "shape": [rows, width_in, width_out], "rel_diff": diff}
  for mode, jfn, tfn_ in (("forward", forward, torch_forward),
                          ("fwd+bwd", backward, torch_backward)):
    jax.block_until_ready(jfn(*jx))
    tfn_()
    j, t = [], []
    for rep in range(reps):  # The sides alternate which goes first.
      pair = [(j, lambda: jax.block_until_ready(jfn(*jx))), (t, tfn_)]
      for store, f in (pair if rep % 2 == 0 else pair[::-1]):
        store.extend(timed(f, 1))
    result[mode] = {"jax_ms": 1e3 * statistics.median(j), "torch_ms": 1e3 * statistics.median(t),
                    "torch_over_jax": statistics.median(t) / statistics.median(j)}
  return result


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--reps", type=int, default=7)
  p.add_argument("--json", metavar="PATH")
  args = p.parse_args(argv)
  import torch
  torch.set_num_threads(CORES)
  print(f"jax {jax.__version__}, torch {torch.__version__}, {CORES} cores, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}; medians of {args.reps}, ms")
  print(f"{'case':<10} {'rows x in -> out':>20} {'fwd JAX':>8} {'fwd PT':>8} {'PT/JAX':>7} "
        f"{'f+b JAX':>8} {'f+b PT':>8} {'PT/JAX':>7} {'rel diff':>9}")
  results = []
  for case, rows, w_in, w_out in CASES:
    r = measure(torch, case, rows, w_in, w_out, args.reps)
    results.append(r)
    f, b = r["forward"], r["fwd+bwd"]
    print(f"{case:<10} {f'{rows} x {w_in} -> {w_out}':>20} {f['jax_ms']:8.2f} {f['torch_ms']:8.2f} "
          f"{f['torch_over_jax']:7.2f} {b['jax_ms']:8.2f} {b['torch_ms']:8.2f} "
          f"{b['torch_over_jax']:7.2f} {r['rel_diff']:9.1e}", flush=True)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as fh:
      json.dump(results, fh, indent=1)
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
