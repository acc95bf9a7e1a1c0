"""Densities at a FLOP budget: the Sparse Wide network's density chosen so
that its sparse FLOPs equal the dense network's, as the official Sparse-IFT
code does by binary search (`get_mask_optimizer(match_target_flops=True)`,
tolerance 1e-3); here by bisection to float precision."""
import jax
import jax.numpy as jnp

from vision_jax.sparsity import accounting, densities, transform


def model_flops(model, inputs: tuple) -> tuple[dict, dict]:
  """(param shapes, {kernel: dense multiply-adds per example}) of `model` on
  one example of `inputs` (shapes), without compute."""
  examples = [jnp.zeros((1, *x.shape), x.dtype) for x in inputs]
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), *examples, train=False))
  return variables["params"], accounting.dense_flops(model, variables, inputs)


def sparse_flops(flops: dict, layer_density: dict) -> float:
  """Multiply-adds with each layer's FLOPs scaled by its density (1 if absent)."""
  return float(sum(f * layer_density.get(n, 1.0) for n, f in flops.items()))


def isoflop_density(flops: dict, masked: dict, budget: float, distribution: str = "uniform",
                    iterations: int = 60, **distribution_args) -> float:
  """The largest overall density of the `masked` layers ({name: shape}) whose
  sparse FLOPs do not exceed `budget` (1 when the dense network fits)."""
  def cost(d: float) -> float:
    return sparse_flops(flops, densities.layer_densities(masked, d, distribution,
                                                         **distribution_args))
  if cost(1.0) <= budget:
    return 1.0
  low, high = 0.0, 1.0
  for _ in range(iterations):
    mid = (low + high) / 2
    low, high = (mid, high) if cost(mid) <= budget else (low, mid)
  if low == 0.0:
    raise ValueError(f"No density fits {budget:.4g} FLOPs: the unmasked layers alone cost "
                     f"{sparse_flops({n: f for n, f in flops.items() if n not in masked}, {}):.4g}.")
  return low


def wide_density(dense_model, wide_model, inputs: tuple, include: str = r".*kernel",
                 exclude: str | None = None, distribution: str = "uniform") -> float:
  """The density at which `wide_model` (masked per include / exclude) costs
  the FLOPs of `dense_model`."""
  _, budget_flops = model_flops(dense_model, inputs)
  params, flops = model_flops(wide_model, inputs)
  masked = transform.selected_shapes(params, include, exclude)
  return isoflop_density(flops, masked, sparse_flops(budget_flops, {}), distribution)
