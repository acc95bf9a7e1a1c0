r"""Hyperbolic 8-16-32 ResNet-20 train step (Poincaré ResNet, ICCV 2023):
hand-written VJPs vs plain autodiff vs the PyTorch library hypll.

  python bench/poincare_resnet.py                     # batch 128, 32x32, CIFAR-10 head
  python bench/poincare_resnet.py --batch 32 --skip-hypll

A train step is forward + backward + Adam update of the whole network on one
random batch. Prints milliseconds per step and images/s for each, the ratios
(targets: custom VJPs >= 3x faster than hypll) and the XLA memory analysis of
the compiled step (target: peak of the custom-VJP step <= 0.5x autodiff's).
hypll (pip `hypll`, CPU torch) builds the same network from its own layers
(`HConvolution2d`, `HBatchNorm2d` and `HAvgPool2d` with midpoints, `HReLU`,
Möbius-added skips, `HLinear`) with its `RiemannianAdam`.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from vision_jax.models import poincare_resnet


def jax_step(custom_grads: bool, batch: int, size: int, classes: int):
  model = poincare_resnet.hyperbolic_resnet20(num_classes=classes, custom_grads=custom_grads)
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3))
  labels = jax.nn.one_hot(jnp.arange(batch) % classes, classes)
  variables = model.init(jax.random.PRNGKey(1), x[:2])
  tx = optax.adam(1e-3)
  state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))

  def step(state, x, labels):
    params, stats, opt = state

    def loss_fn(params):
      (logits, _), new = model.apply({"params": params, "batch_stats": stats}, x, train=True,
                                     mutable=["batch_stats"])
      return optax.softmax_cross_entropy(logits, labels).mean(), new["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt = tx.update(grads, opt, params)
    return (optax.apply_updates(params, updates), stats, opt), loss

  compiled = jax.jit(step, donate_argnums=0).lower(state, x, labels).compile()
  return compiled, state, (x, labels)


def time_jax(compiled, state, batch, steps: int, reps: int) -> float:
  state, loss = compiled(state, *batch)
  jax.block_until_ready(loss)
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    for _ in range(steps):
      state, loss = compiled(state, *batch)
    jax.block_until_ready(loss)
    times.append((time.perf_counter() - start) / steps)
  return statistics.median(times)


def memory(compiled) -> dict:
  m = compiled.memory_analysis()
  peak = (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes
          - m.alias_size_in_bytes)
  return {"temp": m.temp_size_in_bytes, "peak": peak}


def hypll_step(batch: int, size: int, classes: int):
  """The same network from hypll's layers; returns a closure running one train step."""
  import torch
  from hypll import nn as hnn
  from hypll.manifolds.poincare_ball import Curvature, PoincareBall
  from hypll.optim import RiemannianAdam
  from hypll.tensors import TangentTensor

  ball = PoincareBall(c=Curvature(value=0.1))

  def conv(cin, cout, k, stride):
    return hnn.HConvolution2d(in_channels=cin, out_channels=cout, kernel_size=k, manifold=ball,
                              stride=stride, padding=k // 2)

  class Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.conv1, self.conv2 = conv(cin, cout, 3, stride), conv(cout, cout, 3, 1)
      self.bn1 = hnn.HBatchNorm2d(features=cout, manifold=ball, use_midpoint=True)
      self.bn2 = hnn.HBatchNorm2d(features=cout, manifold=ball, use_midpoint=True)
      self.relu = hnn.HReLU(manifold=ball)
      self.down = conv(cin, cout, 1, stride) if stride != 1 else None

    def forward(self, x):
      y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
      return self.relu(ball.mobius_add(y, self.down(x) if self.down else x))

  widths, layers, cin = (8, 16, 32), [], 8
  for i, width in enumerate(widths):
    for j in range(3):
      layers.append(Block(cin, width, 2 if i > 0 and j == 0 else 1))
      cin = width
  net = torch.nn.Sequential(
      conv(3, 8, 3, 1), hnn.HBatchNorm2d(features=8, manifold=ball, use_midpoint=True),
      hnn.HReLU(manifold=ball), *layers,
      hnn.HAvgPool2d(kernel_size=size // 4, manifold=ball, use_midpoint=True))
  head = hnn.HLinear(in_features=32, out_features=classes, manifold=ball)
  params = list(net.parameters()) + list(head.parameters())
  opt = RiemannianAdam(params, lr=1e-3)
  x = torch.randn(batch, 3, size, size)
  labels = torch.arange(batch) % classes

  def step():
    opt.zero_grad()
    features = net(ball.expmap(TangentTensor(data=x, man_dim=1, manifold=ball)))
    features = features.squeeze()
    logits = head(features)
    loss = torch.nn.functional.cross_entropy(logits.tensor, labels)
    loss.backward()
    opt.step()
    return float(loss)

  return step


def time_torch(step, steps: int, reps: int) -> float:
  step()
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    for _ in range(steps):
      step()
    times.append((time.perf_counter() - start) / steps)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=32)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--reps", type=int, default=3)
  parser.add_argument("--skip-hypll", action="store_true")
  args = parser.parse_args()
  print(f"Hyperbolic ResNet-20 (8-16-32) train step, batch {args.batch}, {args.size}x{args.size}, "
        f"on {jax.devices()[0].device_kind} ({jax.device_count()} device(s))")
  results, mem = {}, {}
  for name, custom in (("custom VJPs", True), ("plain autodiff", False)):
    compiled, state, batch = jax_step(custom, args.batch, args.size, args.classes)
    mem[name] = memory(compiled)
    results[name] = time_jax(compiled, state, batch, args.steps, args.reps)
  if not args.skip_hypll:
    results["hypll (PyTorch)"] = time_torch(hypll_step(args.batch, args.size, args.classes),
                                            args.steps, args.reps)
  for name, seconds in results.items():
    print(f"  {name:16s} {1e3 * seconds:9.1f} ms/step {args.batch / seconds:8.1f} img/s")
  custom = results["custom VJPs"]
  print(f"  speed: custom VJPs vs plain autodiff {results['plain autodiff'] / custom:.2f}x")
  if "hypll (PyTorch)" in results:
    print(f"  speed: custom VJPs vs hypll {results['hypll (PyTorch)'] / custom:.2f}x (target >= 3x)")
  for kind in ("temp", "peak"):
    a, b = mem["custom VJPs"][kind], mem["plain autodiff"][kind]
    print(f"  memory ({kind}): custom {a / 2**20:.1f} MiB, autodiff {b / 2**20:.1f} MiB, "
          f"ratio {a / b:.2f}" + (" (target <= 0.5)" if kind == "peak" else ""))


if __name__ == "__main__":
  main()
