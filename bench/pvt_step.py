r"""Train-step throughput of PVT in vision_jax, against the PyTorch `transformers` PVT.

  . .venv/bin/activate
  python bench/pvt_step.py --steps 1 --reps 3 --breakdown --json /tmp/pvt_step.json
  taskset -c 1 python bench/pvt_step.py --steps 1 --reps 3 --no-det   # one core each

(about 5 and 3 minutes on 2 CPU cores; the defaults, --steps 3 --reps 5, take longer.)

1. Classification: one PVT-Small train step (forward + backward + AdamW update,
   1000 classes, --size x --size images, --batch per step) in
   (a) vision_jax: `models.pvt.pvt_small`, `tasks.classification.ClassificationTask`,
       `optim.builder.make_optimizer` (AdamW, no decay on bias/scale) and
       `steps.make_init` / `steps.make_train_step`, jitted as the trainer does
       (`jax.jit(step, donate_argnums=0)`) and compiled ahead of time;
   (b) PyTorch, eager: `transformers.PvtForImageClassification` with the PVT-Small
       `PvtConfig` (drop path 0.1) in train mode, cross-entropy, `torch.optim.AdamW`
       (no decay on 1-D parameters; fused by default, see --torch-adamw),
       `torch.set_num_threads(--threads)`, default: the cores this process may use.
   Both see the same random batch and have 24,485,864 parameters at 224 px (off
   224, transformers' position embeddings are built for --size: it cannot resize).
   After --warmup untimed steps each (compilation excluded), every repetition times
   --steps consecutive steps of one side, then of the other (the order alternates,
   PAUSE_S idle before each),
   so both share the machine's noise; JAX time ends at `jax.block_until_ready` of
   the new state and metrics. Reported: median img/s over --reps repetitions, and
   the median of the per-repetition ratios vision_jax / PyTorch.
2. Detection: one RetinaNet-PVT-Tiny train step (`models.retinanet.RetinaNet`,
   `tasks.detection.DetectionTask`, AdamW) through the same `make_train_step`, on a
   --det-size canvas with --det-batch images and 1..--det-boxes random boxes each.
   No reference implementation; img/s only.

Columns: CPU is the share of the allowed cores the process got while timed (process
CPU time / wall time / cores); well below 100% means other processes took cores,
which hurts PyTorch's OpenMP threads far more than XLA's pool, so on a busy machine
compare under `taskset -c <one core>`. GFLOP/s uses XLA's FLOP count of the compiled
step; XLA peak = arguments + outputs + temporaries - donated buffers of that step.
--breakdown also times forward passes alone (loss, no gradient, train-mode drop
path). XLA flags come from the XLA_FLAGS environment variable (printed).

On an accelerator (the PyTorch side stays on the CPU; use --no-torch), --dtype
bfloat16 computes in bfloat16 with float32 parameters and losses, --attention
fused goes through `jax.nn.dot_product_attention` (cuDNN's kernel on GPUs),
--remat-stages 1,2 rematerialises those PVT stages, and MFU is printed: XLA's
FLOPs per step x steps/s over the device's dense bfloat16 peak (PEAK_BF16_FLOPS,
from the vendors' data sheets).
"""
import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from vision_jax import config as config_lib
from vision_jax import steps
from vision_jax.batch import IMAGE
from vision_jax.models.backbones import pvt
from vision_jax.models.retinanet import RetinaNet
from vision_jax.optim import builder
from vision_jax.tasks.classification.task import ClassificationTask
from vision_jax.tasks.detection.task import DetectionTask

CORES = len(os.sched_getaffinity(0))  # Honours `taskset` (so do XLA's thread pools).
BUSY_SHARE = 0.8  # Below this median CPU share, other processes distorted the timings.
# Idle time before each timed sample: PyTorch's OpenMP workers keep spinning for a while
# after its step and slowed the XLA step timed right after it by up to 2x (bench/README.md).
PAUSE_S = 0.5
PVT_SMALL_PARAMS = 24_485_864  # 1000 classes; models/pvt.py docstring, reference/pvt_retinanet.md.
NUM_CLASSES = 1000
CLS_LR, CLS_WD = 5e-4, 0.05  # PVT ImageNet recipe (lr for batch 512).
DET_LR, DET_WD = 1e-4, 1e-4  # PVT RetinaNet recipe.
# Dense bfloat16 peak FLOP/s by device_kind substring (data sheets; no sparsity).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12,
                   "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12,
                   "TPU v6": 918e12}


def peak_flops(device) -> float | None:
  """The device's dense bfloat16 peak, or None (CPUs, unknown kinds)."""
  if device.platform == "cpu":
    return None
  return next((v for k, v in PEAK_BF16_FLOPS.items() if k in device.device_kind), None)


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--batch", type=int, default=32, help="classification images per step")
  p.add_argument("--size", type=int, default=224, help="classification image side")
  p.add_argument("--steps", type=int, default=3, help="timed steps per repetition")
  p.add_argument("--reps", type=int, default=5, help="timed repetitions (median reported)")
  p.add_argument("--warmup", type=int, default=1, help="untimed steps after compilation")
  p.add_argument("--threads", type=int, default=CORES,
                 help="torch.set_num_threads (default: the cores this process may use)")
  p.add_argument("--det-batch", type=int, default=8)
  p.add_argument("--det-size", type=int, default=256, help="detection canvas side")
  p.add_argument("--det-classes", type=int, default=80, help="80 = COCO; the shapes demo has 6")
  p.add_argument("--det-boxes", type=int, default=8, help="box slots per image (1..this are real)")
  p.add_argument("--torch-adamw", choices=("fused", "foreach", "for-loop"), default="fused",
                 help="torch.optim.AdamW implementation (fused is its fastest on CPU)")
  p.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
  p.add_argument("--no-det", action="store_true", help="skip the detection step")
  p.add_argument("--breakdown", action="store_true", help="also time forward-only passes")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="vision_jax compute dtype (parameters stay float32)")
  p.add_argument("--attention", choices=pvt.ATTENTION, default="einsum")
  p.add_argument("--remat-stages", default="", help="PVT stages to rematerialise, e.g. 1,2")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--json", metavar="PATH", help="write the numbers here")
  return p.parse_args(argv)


# ---------------------------------------------------------------- vision_jax side

def trainer_optimizer(param_shapes, lr: float, weight_decay: float, name: str = "adamw",
                      transforms: tuple = ()):
  """The trainer's optimizer `name` (optim.builder; SGD with momentum 0.9) with a
  constant schedule and `config.optimizer.transforms` = `transforms`."""
  cfg = config_lib.base_config()
  cfg.optimizer.name, cfg.optimizer.learning_rate = name, lr
  cfg.optimizer.weight_decay = weight_decay
  cfg.optimizer.transforms = tuple(transforms)
  cfg.schedule.name = "constant"
  schedule = builder.make_schedule(cfg.schedule, lr, total_steps=1000, warmup_steps=0)
  return builder.make_optimizer(cfg.optimizer, schedule, param_shapes), schedule


def memory_of(compiled) -> dict:
  """Buffer sizes of a compiled step; peak = arguments + outputs + temporaries -
  donated (aliased) outputs. (XLA:CPU's own peak field counts arguments only.)"""
  m = compiled.memory_analysis()
  if m is None:
    return {}
  out = {k: int(getattr(m, k)) for k in ("argument_size_in_bytes", "output_size_in_bytes",
                                         "alias_size_in_bytes", "temp_size_in_bytes")}
  out["peak_bytes"] = (out["argument_size_in_bytes"] + out["output_size_in_bytes"]
                       + out["temp_size_in_bytes"] - out["alias_size_in_bytes"])
  return out


def flops_of(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float((cost or {}).get("flops", 0.0))


class JaxStep:
  """A vision_jax model + task trained by `steps.make_train_step` on one fixed batch
  (`optimizer`: a name of the trainer's optimizer table; `transforms`: the
  config's optimizer transforms, e.g. sparsity)."""

  def __init__(self, model, task, batch: dict, lr: float, weight_decay: float, seed: int,
               optimizer: str = "adamw", transforms: tuple = ()):
    image_shape = batch[IMAGE].shape[1:]
    param_shapes = jax.eval_shape(lambda: model.init(
        jax.random.PRNGKey(0), jnp.zeros((1, *image_shape)), train=False)["params"])
    tx, schedule = trainer_optimizer(param_shapes, lr, weight_decay, optimizer, transforms)
    inputs = (jax.ShapeDtypeStruct(image_shape, jnp.float32),)
    self.state = jax.jit(steps.make_init(model, tx, inputs, seed))()
    self.batch = jax.device_put(batch)
    self.images = len(batch[IMAGE])
    self.params = sum(x.size for x in jax.tree.leaves(self.state["params"]))
    start = time.perf_counter()
    jitted = jax.jit(steps.make_train_step(model, task, tx, schedule), donate_argnums=0)
    self.step = jitted.lower(self.state, self.batch).compile()
    self.compile_s = time.perf_counter() - start
    self.flops, self.memory = flops_of(self.step), memory_of(self.step)
    self.metrics = None

    def forward_loss(state, batch):  # Train-mode forward and loss, no gradient.
      mutable = {"mutable": list(state["model_state"])} if state["model_state"] else {}
      out = model.apply(steps.variables_of(state), batch[IMAGE], train=True,
                        rngs={"dropout": state["rng"]}, **mutable)
      outputs, aux = out[0] if mutable else out
      return task.loss(outputs, aux, batch)[0]

    self._forward = jax.jit(forward_loss)

  def run(self, n: int) -> float:
    """Seconds for `n` train steps, results ready."""
    start = time.perf_counter()
    for _ in range(n):
      self.state, self.metrics = self.step(self.state, self.batch)
    jax.block_until_ready((self.state, self.metrics))
    return time.perf_counter() - start

  def run_forward(self, n: int) -> float:
    start = time.perf_counter()
    out = [self._forward(self.state, self.batch) for _ in range(n)]
    jax.block_until_ready(out)
    return time.perf_counter() - start

  def check_finite(self) -> float:
    loss = float(self.metrics["train/loss"])
    if not np.isfinite(loss):
      raise FloatingPointError(f"non-finite training loss {loss}")
    return loss


def classification_batch(rng: np.random.Generator, batch: int, size: int) -> dict:
  labels = rng.integers(0, NUM_CLASSES, batch)
  return {"image": rng.standard_normal((batch, size, size, 3), np.float32),
          "labels": np.eye(NUM_CLASSES, dtype=np.float32)[labels],
          "mask": np.ones(batch, np.float32), "skipped": np.zeros(batch, np.int32)}


def detection_batch(rng: np.random.Generator, batch: int, size: int, slots: int,
                    num_classes: int) -> dict:
  """Random images with 1..`slots` valid xyxy pixel boxes each; the rest padding."""
  boxes = np.zeros((batch, slots, 4), np.float32)
  classes = np.full((batch, slots), -1, np.int32)
  for i in range(batch):
    n = int(rng.integers(1, slots + 1))
    wh = rng.uniform(8, 0.6 * size, (n, 2))
    x0y0 = rng.uniform(0, 1, (n, 2)) * (size - wh)
    boxes[i, :n] = np.concatenate([x0y0, x0y0 + wh], 1)
    classes[i, :n] = rng.integers(0, num_classes, n)
  return {"image": rng.standard_normal((batch, size, size, 3), np.float32),
          "boxes": boxes, "classes": classes,
          "image/size": np.full((batch, 2), size, np.int32),
          "image/id": np.arange(batch, dtype=np.int32),
          "image/scale": np.ones((batch, 2), np.float32),
          "mask": np.ones(batch, np.float32), "skipped": np.zeros(batch, np.int32)}


# ---------------------------------------------------------------- PyTorch side

class TorchStep:
  """transformers' PvtForImageClassification (PVT-Small) trained with AdamW."""

  def __init__(self, batch: dict, threads: int, seed: int, adamw_impl: str = "fused"):
    import torch  # Imported here so --no-torch runs without it.
    from transformers import PvtConfig, PvtForImageClassification
    self.torch = torch
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    # Position embeddings sized for the input: transformers' resize to another size
    # fails (it reshapes the stored grid to the new one), so params differ off 224.
    config = PvtConfig(image_size=batch["image"].shape[1], depths=[3, 4, 6, 3],
                       hidden_sizes=[64, 128, 320, 512], num_attention_heads=[1, 2, 5, 8],
                       mlp_ratios=[8, 8, 4, 4], sequence_reduction_ratios=[8, 4, 2, 1],
                       patch_sizes=[4, 2, 2, 2], strides=[4, 2, 2, 2], num_labels=NUM_CLASSES,
                       drop_path_rate=0.1)
    self.model = PvtForImageClassification(config).train()
    params = list(self.model.parameters())
    self.params = sum(p.numel() for p in params)
    groups = [{"params": [p for p in params if p.ndim > 1], "weight_decay": CLS_WD},
              {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}]
    impl = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for-loop": {"foreach": False}}
    self.opt = torch.optim.AdamW(groups, lr=CLS_LR, **impl[adamw_impl])
    self.x = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
    self.y = torch.from_numpy(batch["labels"].argmax(-1))
    self.images = len(self.x)
    self.loss = None

  def run(self, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
      logits = self.model(pixel_values=self.x).logits
      self.loss = self.torch.nn.functional.cross_entropy(logits, self.y)
      self.opt.zero_grad(set_to_none=True)
      self.loss.backward()
      self.opt.step()
    return time.perf_counter() - start

  def run_forward(self, n: int) -> float:
    start = time.perf_counter()
    with self.torch.no_grad():
      for _ in range(n):
        logits = self.model(pixel_values=self.x).logits
        self.torch.nn.functional.cross_entropy(logits, self.y)
    return time.perf_counter() - start


# ---------------------------------------------------------------- timing

def interleaved(runners: dict, method: str, steps_per_rep: int, reps: int) -> dict:
  """(img/s, CPU share) per repetition for each runner; the order alternates every
  repetition, with PAUSE_S idle before each sample. CPU share = process CPU time /
  (wall time x cores): well below 1 means other processes took cores during that sample."""
  names = list(runners)
  samples = {name: [] for name in names}
  for rep in range(reps):
    for name in (names if rep % 2 == 0 else names[::-1]):
      time.sleep(PAUSE_S)
      cpu = time.process_time()
      seconds = getattr(runners[name], method)(steps_per_rep)
      share = (time.process_time() - cpu) / (seconds * CORES)
      samples[name].append((steps_per_rep * runners[name].images / seconds, share))
  return samples


def summary(samples: list[tuple[float, float]]) -> dict:
  rates = [r for r, _ in samples]
  return {"img_s": statistics.median(rates), "min": min(rates), "max": max(rates),
          "cpu_share": statistics.median(c for _, c in samples), "samples": samples}


def paired_ratio(a: list, b: list) -> float:
  """Median over repetitions of img/s of `a` over img/s of `b`."""
  return statistics.median(x[0] / y[0] for x, y in zip(a, b))


def fmt_bytes(n: int) -> str:
  return f"{n / 2**30:.2f} GiB"


def main(argv=None) -> dict:
  args = parse_args(argv)
  rng = np.random.default_rng(args.seed)
  print(f"jax {jax.__version__} on {jax.devices()[0].platform} x{jax.device_count()}, "
        f"{CORES} cores, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
  results = {"args": vars(args), "jax": jax.__version__, "cores": CORES,
             "xla_flags": os.environ.get("XLA_FLAGS", ""),
             "device": jax.devices()[0].device_kind, "peak_flops": peak_flops(jax.devices()[0])}

  # 1. Classification.
  batch = classification_batch(rng, args.batch, args.size)
  variant = {"dtype": jnp.dtype(args.dtype), "attention": args.attention,
             "remat_stages": tuple(int(k) for k in args.remat_stages.split(",") if k)}
  runners = {"vision_jax": JaxStep(pvt.pvt_small(num_classes=NUM_CLASSES, **variant),
                                   ClassificationTask(), batch, CLS_LR, CLS_WD, args.seed)}
  jx = runners["vision_jax"]
  print(f"PVT-Small params: vision_jax {jx.params:,}", end="")
  counts = {"vision_jax": jx.params}
  if not args.no_torch:
    runners["pytorch"] = TorchStep(batch, args.threads, args.seed, args.torch_adamw)
    counts["pytorch"] = runners["pytorch"].params
    import torch
    import transformers
    results.update(torch=torch.__version__, transformers=transformers.__version__)
    print(f", pytorch {counts['pytorch']:,}", end="")
  if args.size == 224:
    same = all(c == PVT_SMALL_PARAMS for c in counts.values())
    print(f" (expected {PVT_SMALL_PARAMS:,}: {'ok' if same else 'MISMATCH'})")
  else:
    same = None
    print(f" (PyTorch position embeddings are sized for {args.size}px, not 224)")
  print(f"vision_jax step compiled in {jx.compile_s:.1f}s")
  for runner in runners.values():
    runner.run(args.warmup)
  rates = interleaved(runners, "run", args.steps, args.reps)
  jx.check_finite()
  cls = {"params": counts, "params_ok": same,
         "batch": args.batch, "size": args.size, "compile_s": jx.compile_s,
         "flops_per_step": jx.flops, "memory": jx.memory,
         **{name: summary(r) for name, r in rates.items()}}
  if "pytorch" in rates:
    cls["ratio"] = paired_ratio(rates["vision_jax"], rates["pytorch"])
  if args.breakdown:
    for runner in runners.values():
      runner.run_forward(1)
    fwd = interleaved(runners, "run_forward", args.steps, args.reps)
    cls["forward"] = {name: summary(r) for name, r in fwd.items()}
    if "pytorch" in fwd:
      cls["forward"]["ratio"] = paired_ratio(fwd["vision_jax"], fwd["pytorch"])
  results["classification"] = cls

  # 2. Detection.
  if not args.no_det:
    dbatch = detection_batch(rng, args.det_batch, args.det_size, args.det_boxes,
                             args.det_classes)
    det_runner = JaxStep(RetinaNet(backbone="pvt_tiny", num_classes=args.det_classes,
                                   dtype=variant["dtype"],
                                   backbone_args={k: v for k, v in variant.items() if k != "dtype"}),
                         DetectionTask(num_classes=args.det_classes), dbatch, DET_LR, DET_WD,
                         args.seed)
    det_runner.run(args.warmup)
    det_rates = interleaved({"vision_jax": det_runner}, "run", args.steps, args.reps)
    loss = det_runner.check_finite()
    positives = float(det_runner.metrics["train/positives_per_image"])
    results["detection"] = {"params": det_runner.params, "batch": args.det_batch,
                            "size": args.det_size, "classes": args.det_classes,
                            "compile_s": det_runner.compile_s, "loss": loss,
                            "positives_per_image": positives,
                            "flops_per_step": det_runner.flops, "memory": det_runner.memory,
                            "vision_jax": summary(det_rates["vision_jax"])}

  print_table(results)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
    print(f"wrote {args.json}")
  return results


def print_table(r: dict) -> None:
  a = r["args"]
  print(f"\n{a['steps']} timed steps x {a['reps']} repetitions, median img/s [min, max]; "
        "CPU = median share of the cores this process got")
  print(f"{'train step':<52} {'img/s':>8} {'range':>17} {'CPU':>5} {'GFLOP/s':>8} {'XLA peak':>10}")

  def row(label, s, flops=0.0, images=1, memory=None):
    gflops = f"{s['img_s'] / images * flops / 1e9:8.1f}" if flops else f"{'':>8}"
    peak = fmt_bytes(memory["peak_bytes"]) if memory else ""
    print(f"{label:<52} {s['img_s']:8.2f} [{s['min']:6.2f}, {s['max']:6.2f}] "
          f"{s['cpu_share']:5.0%} {gflops} {peak:>10}")

  c = r["classification"]
  shape = f"b{c['batch']} {c['size']}px"
  if r.get("peak_flops"):
    achieved = c["vision_jax"]["img_s"] / c["batch"] * c["flops_per_step"]
    print(f"MFU on {r['device']}: {achieved / 1e12:.1f} TFLOP/s of {r['peak_flops'] / 1e12:.0f} "
          f"(dense bf16 peak) = {achieved / r['peak_flops']:.1%}")
  row(f"PVT-Small cls, vision_jax ({shape})", c["vision_jax"], c["flops_per_step"], c["batch"],
      c["memory"])
  if "pytorch" in c:
    row(f"PVT-Small cls, PyTorch transformers ({shape})", c["pytorch"])
    print(f"{'  ratio vision_jax / PyTorch (paired median)':<52} {c['ratio']:8.2f}x"
          "  (target >= 1.0x)")
  if "forward" in c:
    f = c["forward"]
    row("  forward only, vision_jax", f["vision_jax"])
    if "pytorch" in f:
      row("  forward only, PyTorch (no_grad)", f["pytorch"])
      print(f"{'  forward ratio vision_jax / PyTorch':<52} {f['ratio']:8.2f}x")
  if "detection" in r:
    d = r["detection"]
    row(f"RetinaNet-PVT-Tiny det, vision_jax (b{d['batch']} {d['size']}px {d['classes']}cls)",
        d["vision_jax"], d["flops_per_step"], d["batch"], d["memory"])
  shares = [v["cpu_share"] for k, v in c.items() if k in ("vision_jax", "pytorch")]
  if min(shares) < BUSY_SHARE:
    print(f"WARNING: this process got only {min(shares):.0%} of its {r['cores']} cores: other "
          "processes were running and the timings (PyTorch's OpenMP threads above all) are "
          "distorted; see bench/README.md.")
  print(f"XLA FLOPs/step: cls {c['flops_per_step'] / 1e9:.1f} G", end="")
  if "detection" in r:
    d = r["detection"]
    print(f"; det {d['flops_per_step'] / 1e9:.1f} G, {d['params']:,} params, loss "
          f"{d['loss']:.3f}, {d['positives_per_image']:.1f} positive anchors/img", end="")
  print()


if __name__ == "__main__":
  main(sys.argv[1:])
