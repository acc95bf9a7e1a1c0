"""The `sparsity` optimizer transform (`config.optimizer.transforms`): masks
as optimizer state, any method of `vision_jax.sparsity.methods` on any model.

  config.optimizer.transforms = ({"name": "sparsity", "method": "rigl", "density": 0.1,
                                  "exclude": r"(stem_conv|head)/kernel",
                                  "frequency_steps": 100},)

The transform selects the parameters whose '/'-joined path fully matches
`include` (default: every `kernel`) and not `exclude`; it keeps one boolean
mask per selected parameter in its state, in a tree shaped like the
parameters (`optax.MaskedNode` elsewhere), so partition rules shard a mask
exactly like its parameter and checkpoints save and restore it with the rest
of the train state. Each step

  g <- g * m;  u <- inner(g);  w' = m (w + u)           (masked weights stay exactly 0)
  at an update step t: m' <- method(w', dense gradient, t); w' <- m' w'
                       moments of `inner` zeroed where m' = 0

so unselected parameters are untouched, and the optimizer's momentum / Adam
moments of masked entries are zero whenever the mask changes. The starting
masks are applied to the fresh parameters by `vision_jax.optim.transforms.
project_params` at init.
"""
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from vision_jax.sharding import path_name
from vision_jax.sparsity import densities, masks as mask_ops, methods, rules


class SparsityState(NamedTuple):
  count: jax.Array  # Optimizer steps taken.
  masks: Any  # Params-shaped: bool masks for selected leaves, optax.MaskedNode elsewhere.
  inner: Any  # The wrapped optimizer's state.
  # A copy of the parameters (IMP's rewind point, AP's reference), else MaskedNode.
  reference: Any = optax.MaskedNode()
  rewound: jax.Array | None = None  # IMP: the last step rewound the parameters.

  def after_update(self, params):
    """`params` after `optax.apply_updates`: on an IMP rewinding step, exactly
    the rewind point's values (masked), which the updates reach only to
    rounding."""
    if self.rewound is None:
      return params
    masks = self.selected()
    reference = _by_name(self.reference, list(masks))
    rewound = _replace(self.reference, {n: jnp.where(m, reference[n], jnp.zeros_like(reference[n]))
                                        for n, m in masks.items()})
    return jax.lax.cond(self.rewound, lambda p: rewound, lambda p: p, params)

  def selected(self) -> dict:
    """{path: mask} of the masked parameters."""
    return {path_name(p): m for p, m in jax.tree_util.tree_flatten_with_path(
        self.masks, is_leaf=lambda x: isinstance(x, optax.MaskedNode))[0]
            if not isinstance(m, optax.MaskedNode)}

  def project(self, params):
    """`params` with every masked entry set to 0."""
    masks = self.selected()
    return _replace(params, {n: jnp.where(masks[n], p, jnp.zeros_like(p))
                             for n, p in _by_name(params, list(masks)).items()})

  def step_metrics(self, params) -> dict:
    """The measured sparsity (share of exact zeros) of the masked parameters
    and the masks' own sparsity."""
    masks = self.selected()
    weights = _by_name(params, list(masks))
    total = float(sum(m.size for m in masks.values()))
    zeros = sum(jnp.sum(weights[n] == 0, dtype=jnp.float32) for n in masks)
    masked = sum(jnp.sum(~m, dtype=jnp.float32) for m in masks.values())
    return {"sparsity/measured": zeros / total, "sparsity/masks": masked / total}


def selected_shapes(params, include: str, exclude: str | None) -> dict[str, tuple[int, ...]]:
  """{path: shape} of the parameters the transform masks, in tree order."""
  inc, exc = re.compile(include), re.compile(exclude) if exclude else None
  out = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    name = path_name(path)
    if inc.fullmatch(name) and not (exc and exc.fullmatch(name)):
      if len(leaf.shape) < 2:
        raise ValueError(f"Sparsity 'include' selects {name!r} of shape {tuple(leaf.shape)}; "
                         "only kernels (2 or more dimensions) can be masked.")
      out[name] = tuple(leaf.shape)
  if not out:
    raise ValueError(f"Sparsity 'include'={include!r} / 'exclude'={exclude!r} select no "
                     "parameter.")
  return out


def sparsity(inner: optax.GradientTransformation, method: str, **args
             ) -> optax.GradientTransformation:
  """`inner` with sparse-training masks of `method` (see the module docstring)."""
  m = methods.resolve(method, args)
  include, exclude = args.get("include", methods.COMMON["include"]), args.get("exclude")
  seed = int(args.get("seed", 0))

  def layer_names(params):
    return selected_shapes(params, include, exclude)

  def start_densities(shapes):
    if m.start_density >= 1.0:
      return {n: 1.0 for n in shapes}
    return densities.layer_densities(shapes, m.start_density, m.distribution, first=m.first,
                                     classifier=m.classifier,
                                     classifier_density=m.classifier_density)

  def to_tree(params, per_layer: dict):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: per_layer.get(path_name(path), optax.MaskedNode()), params)

  def init(params):
    shapes = layer_names(params)
    dens = start_densities(shapes)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
    start = {n: (jnp.ones(s, bool) if dens[n] >= 1.0 else mask_ops.random_mask(k, s, dens[n]))
             for (n, s), k in zip(shapes.items(), keys)}
    masks = to_tree(params, start)
    reference = jax.tree.map(jnp.asarray, params) if m.uses_reference else optax.MaskedNode()
    rewound = jnp.zeros((), bool) if m.cycle else None
    return SparsityState(jnp.zeros((), jnp.int32), masks, inner.init(params), reference, rewound)

  def update(grads, state, params=None):
    if params is None:
      raise ValueError("The sparsity transform needs the parameters in update().")
    names = list(layer_names(params))
    flat = lambda tree: _by_name(tree, names)
    old = flat(state.masks)
    g = _replace(grads, {n: jnp.where(old[n], x, 0) for n, x in flat(grads).items()})
    u, inner_state = inner.update(g, state.inner, params)
    u = _replace(u, {n: jnp.where(old[n], x, 0) for n, x in flat(u).items()})
    t = state.count + 1
    p = flat(params)
    w = lambda: {n: jnp.where(old[n], p[n] + flat(u)[n], 0) for n in names}
    reference = flat(state.reference) if m.uses_reference else None
    prunes = rules.prunes_at(m, t, old)
    new = rules.updated_masks(m, t, w, flat(grads), old, reference, seed)
    changed = prunes | rules.grows_at(m, t)
    inner_state = jax.lax.cond(changed, lambda s: _zero_where_masked(inner, s, params, new),
                               lambda s: s, inner_state)
    updates = _replace(u, {n: jnp.where(new[n], flat(u)[n], -p[n]) for n in names})
    new_reference, rewound = state.reference, state.rewound
    if m.cycle:  # IMP: the rewind point, then rewinding at each pruning step.
      # Step k's weights are exactly the parameters step k + 1 starts from.
      new_reference = jax.lax.cond((t == m.rewind + 1) & (m.rewind > 0),
                                   lambda r: jax.tree.map(jnp.asarray, params), lambda r: r,
                                   state.reference)
      rewind_to = _replace(new_reference, {n: jnp.where(new[n], x, 0) for n, x in
                                           flat(new_reference).items()})
      updates = jax.lax.cond(prunes, lambda: jax.tree.map(jnp.subtract, rewind_to, params),
                             lambda: updates)
      inner_state = jax.lax.cond(prunes, lambda s: inner.init(rewind_to), lambda s: s,
                                 inner_state)
      rewound = prunes
    elif m.uses_reference:  # AP beside GMP: the weights at the last pruning step.
      new_reference = jax.lax.cond(prunes, lambda r: optax.apply_updates(params, updates),
                                   lambda r: r, state.reference)
    return updates, SparsityState(t, _replace(state.masks, new), inner_state, new_reference,
                                  rewound)

  return optax.GradientTransformation(init, update)


def validate(args: dict) -> None:
  """Raises ValueError for a spec `sparsity` cannot run, before any compute
  (epoch-valued keys and the run's length stand in as placeholders)."""
  args = {(k[:-7] + "_steps" if k.endswith("_epochs") else k):
          (v * 1000 if k.endswith("_epochs") and v is not None else v) for k, v in args.items()}
  method = args.pop("method", None)
  if method is None:
    raise ValueError(f"Sparsity needs a 'method', one of {sorted(methods.METHODS)}.")
  for key in ("include", "exclude"):
    if args.get(key) is not None:
      try:
        re.compile(args[key])
      except re.error as e:
        raise ValueError(f"'{key}'={args[key]!r} is not a regex: {e}") from None
  methods.resolve(method, {"total_steps": 10**9, **args})


sparsity.validate = validate


def _by_name(tree, names) -> dict:
  found = {path_name(p): x for p, x in jax.tree_util.tree_flatten_with_path(
      tree, is_leaf=lambda x: isinstance(x, optax.MaskedNode))[0]}
  return {n: found[n] for n in names}


def _replace(tree, by_name: dict):
  return jax.tree_util.tree_map_with_path(
      lambda path, x: by_name.get(path_name(path), x), tree,
      is_leaf=lambda x: isinstance(x, optax.MaskedNode))


def _zero_where_masked(inner: optax.GradientTransformation, state, params, masks: dict):
  """`inner`'s per-parameter state (momentum, Adam moments) zeroed at masked entries."""
  full = _replace(jax.tree.map(lambda p: jnp.ones((), bool), params), masks)
  zero = lambda v, mask: (jnp.where(mask, v, jnp.zeros_like(v))
                          if isinstance(v, jax.Array) and np.shape(v) == np.shape(mask) else v)
  return optax.tree_utils.tree_map_params(inner, zero, state, full,
                                          transform_non_params=lambda v: v)
