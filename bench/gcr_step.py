r"""GCR head + Riemannian SGD vs the softmax head: the cost of one train step.

  python bench/gcr_step.py                         # ResNet-18, 1000 classes, batch 128, 224x224
  python bench/gcr_step.py --size 112 --steps 5 --reps 2

Both steps are the trainer's own (`steps.make_train_step`, SGD with momentum
0.9 and weight decay 1e-4 from `optim.builder`); the GCR one has the k = 8
Grassmann head (1000 subspaces of R^512) whose subspaces get Riemannian SGD:
tangent projection, geodesic step, and a Newton-Schulz re-orthonormalisation
every 5 steps. Runs alternate between the two so they share the machine's
noise; a timed run of `--steps` consecutive steps covers the
re-orthonormalising step once in every 5. Prints ms/step, img/s and the ratio
GCR / softmax (target <= 1.05), and the time of the subspace update alone with
and without it.
"""
import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from vision_jax import config as config_lib, steps
from vision_jax.models import gcr
from vision_jax.models.backbones import resnet
from vision_jax.optim import builder, riemannian
from vision_jax.tasks.classification.task import ClassificationTask


def make_step(head: str, batch: int, size: int, classes: int, k: int):
  if head == "gcr":
    model = gcr.GrassmannClassifier(num_classes=classes, backbone="resnet18", subspace_dim=k)
  else:
    model = resnet.resnet18(num_classes=classes)
  opt = config_lib.base_config().optimizer
  opt.weight_decay = 1e-4
  opt.weight_decay_exclude = None
  schedule = optax.constant_schedule(0.1)
  if head == "gcr":  # The class subspaces by Riemannian SGD, as configs/gcr/imagenet.py.
    opt.groups = ((r".*subspaces$", {"name": "grassmann_sgd", "reorth_every": 5}),)
  inputs = (jax.ShapeDtypeStruct((size, size, 3), jnp.float32),)
  init = steps.make_init(model, optax.identity(), inputs, seed=0)
  params = jax.eval_shape(init)["params"]
  tx = builder.make_optimizer(opt, schedule, params)
  state = jax.jit(steps.make_init(model, tx, inputs, seed=0))()
  images = jax.random.normal(jax.random.PRNGKey(0), (batch, size, size, 3))
  data = {"image": images, "labels": jax.nn.one_hot(jnp.arange(batch) % classes, classes),
          "mask": jnp.ones(batch), "skipped": jnp.zeros(batch, jnp.int32)}
  step = jax.jit(steps.make_train_step(model, ClassificationTask(), tx, schedule),
                 donate_argnums=0)
  state, metrics = step(state, data)  # Compile.
  jax.block_until_ready(metrics)
  return step, state, data


def time_steps(step, state, data, n: int):
  start = time.perf_counter()
  for _ in range(n):
    state, metrics = step(state, data)
  jax.block_until_ready(metrics)
  return state, (time.perf_counter() - start) / n


def time_update(classes: int, k: int, reorth: bool, reps: int = 5) -> float:
  """Seconds of one Riemannian update of [classes, 512, k] subspaces."""
  tx = riemannian.grassmann_sgd(0.1, reorth_every=1 if reorth else 10**9)
  S = jax.random.normal(jax.random.PRNGKey(0), (classes, 512, k))
  G = jax.random.normal(jax.random.PRNGKey(1), S.shape)
  state = tx.init(S)
  update = jax.jit(tx.update)
  state = state._replace(count=jnp.ones((), jnp.int32))
  jax.block_until_ready(update(G, state, S))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(update(G, state, S))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch", type=int, default=128)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--classes", type=int, default=1000)
  parser.add_argument("--k", type=int, default=8)
  parser.add_argument("--steps", type=int, default=5, help="Consecutive steps per timed run.")
  parser.add_argument("--reps", type=int, default=2)
  args = parser.parse_args()
  print(f"ResNet-18 train step, batch {args.batch}, {args.size}x{args.size}, {args.classes} "
        f"classes, on {jax.devices()[0].device_kind} ({jax.device_count()} device(s))")
  runs = {head: make_step(head, args.batch, args.size, args.classes, args.k)
          for head in ("softmax", "gcr")}
  times = {head: [] for head in runs}
  for _ in range(args.reps):
    for head, (step, state, data) in runs.items():
      state, seconds = time_steps(step, state, data, args.steps)
      runs[head] = (step, state, data)
      times[head].append(seconds)
  ms = {head: 1e3 * statistics.median(t) for head, t in times.items()}
  for head, value in ms.items():
    print(f"  {head:8s} head: {value:9.1f} ms/step  {args.batch / value * 1e3:7.1f} img/s")
  print(f"  ratio GCR / softmax step time: {ms['gcr'] / ms['softmax']:.3f}  (target <= 1.05)")
  for reorth in (False, True):
    seconds = time_update(args.classes, args.k, reorth)
    print(f"  subspace update alone{' + re-orth.' if reorth else '          '}: "
          f"{1e3 * seconds:7.1f} ms")


if __name__ == "__main__":
  main()
