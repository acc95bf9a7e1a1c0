"""Transforms of `config.optimizer.transforms`: each wraps the optimizer built
so far (`inner`) and returns the new one, in list order; training methods
that keep state of their own (e.g. sparsity masks) take this form.

Such a state may also offer `project(params)` (constrain fresh parameters,
e.g. zero the masked ones; applied at init), `after_update(params)` (the
parameters after each update, e.g. exactly rewound ones) and
`step_metrics(params)` (scalars logged every step, e.g. the measured
sparsity)."""
import jax
import optax


def _nodes_with(opt_state, method: str) -> list:
  return [n for n in jax.tree.leaves(opt_state, is_leaf=lambda x: hasattr(x, method))
          if hasattr(n, method)]


def project_params(opt_state, params):
  """`params` passed through the `project` of every state node that has one."""
  for node in _nodes_with(opt_state, "project"):
    params = node.project(params)
  return params


def after_update(opt_state, params):
  """`params` passed through the `after_update` of every state node that has one."""
  for node in _nodes_with(opt_state, "after_update"):
    params = node.after_update(params)
  return params


def state_metrics(opt_state, params) -> dict:
  """The merged `step_metrics(params)` of every state node that has one."""
  out = {}
  for node in _nodes_with(opt_state, "step_metrics"):
    out.update(node.step_metrics(params))
  return out


def clip_by_global_norm(inner: optax.GradientTransformation,
                        max_norm: float) -> optax.GradientTransformation:
  """Gradients rescaled to global norm <= max_norm before `inner` (Pascanu et al., 2013)."""
  return optax.chain(optax.clip_by_global_norm(max_norm), inner)


def zero_nans(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """NaN gradient entries replaced by 0 before `inner`; the state counts steps that had any."""
  return optax.chain(optax.zero_nans(), inner)
