"""Parameter and FLOP counts of a sparse model, per layer.

FLOPs are multiply-adds per example, as the sparse-training papers count them
(RigL, GraNet, Sparse-IFT: ResNet-50 = 4.1 GFLOPs): a conv or dense layer
costs prod(output dims but channels) x prod(kernel shape), and its sparse
cost is that times the layer's density (the share of its kernel kept).
Output sizes come from one abstract forward pass (`jax.eval_shape`, no
compute) with `flax.linen` Conv / Dense calls intercepted; kernels the model
uses in other ways count parameters only.
"""
import math
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vision_jax.sharding import path_name

LAYERS = (nn.Conv, nn.ConvTranspose, nn.Dense, nn.ConvLocal)


def dense_flops(model: nn.Module, variables: dict, inputs: tuple) -> dict[str, int]:
  """{kernel path: multiply-adds per example} of every Conv / Dense call;
  `variables` and `inputs` (one example, no batch dimension) may be shapes."""
  found: dict[str, int] = {}

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    module = context.module
    if isinstance(module, LAYERS) and context.method_name == "__call__":
      kernel = module.variables["params"]["kernel"]
      name = "/".join((*module.path, "kernel"))
      positions = math.prod(out.shape[1:-1]) if out.ndim > 2 else 1
      found[name] = found.get(name, 0) + positions * math.prod(kernel.shape)
    return out

  def forward(variables, *xs):
    with nn.intercept_methods(record):
      return model.apply(variables, *xs, train=False)

  batched = [jax.ShapeDtypeStruct((1, *x.shape), x.dtype) for x in inputs]
  jax.eval_shape(forward, variables, *batched)
  return found


def layer_table(params, densities: dict[str, float], flops: dict[str, int]) -> list[dict]:
  """One row per masked layer (densities' keys) and per other kernel with
  FLOPs, then a "total" row over every parameter: shape, params, density,
  non-zeros, dense and sparse FLOPs."""
  rows, total_params = [], 0
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name, size = path_name(path), int(np.prod(leaf.shape))
    total_params += size
    if name in densities or name in flops:
      density = densities.get(name, 1.0)
      rows.append({"layer": name, "shape": tuple(leaf.shape), "params": size,
                   "density": density, "nonzero": int(round(size * density)),
                   "flops": flops.get(name, 0),
                   "sparse_flops": int(round(flops.get(name, 0) * density))})
  listed = sum(r["params"] for r in rows)
  rows.append({"layer": "total", "shape": (), "params": total_params,
               "density": None,
               "nonzero": sum(r["nonzero"] for r in rows) + total_params - listed,
               "flops": sum(r["flops"] for r in rows),
               "sparse_flops": sum(r["sparse_flops"] for r in rows)})
  return rows


def format_table(rows: list[dict]) -> str:
  """The table as aligned text, for logs and READMEs."""
  lines = [f"{'layer':<48} {'params':>11} {'density':>8} {'non-zero':>11} {'MFLOPs':>10} "
           f"{'sparse MFLOPs':>13}"]
  for r in rows:
    density = "" if r["density"] is None else f"{r['density']:.4f}"
    lines.append(f"{r['layer']:<48} {r['params']:>11,} {density:>8} {r['nonzero']:>11,} "
                 f"{r['flops'] / 1e6:>10.3f} {r['sparse_flops'] / 1e6:>13.3f}")
  return "\n".join(lines)


def state_table(model: nn.Module, inputs: tuple, state: dict) -> list[dict] | None:
  """The table of a train state whose optimizer state has sparsity masks
  (None without); mask densities are reduced on device, so this works on
  sharded and multi-host states alike."""
  nodes = [n for n in jax.tree.leaves(state["opt_state"], is_leaf=lambda x: hasattr(x, "selected"))
           if hasattr(n, "selected")]
  if not nodes:
    return None
  selected = {k: m for node in nodes for k, m in node.selected().items()}
  densities = jax.device_get(jax.jit(lambda ms: {k: jnp.mean(m, dtype=jnp.float32)
                                                 for k, m in ms.items()})(selected))
  shapes = jax.eval_shape(lambda: {"params": state["params"], **state["model_state"]})
  flops = dense_flops(model, shapes, inputs)
  return layer_table(shapes["params"], {k: float(v) for k, v in densities.items()}, flops)
