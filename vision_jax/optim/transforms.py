"""Transforms of `config.optimizer.transforms`: each wraps the optimizer built
so far (`inner`) and returns the new one, in list order; training methods
that keep state of their own (e.g. sparsity masks) take this form."""
import optax


def clip_by_global_norm(inner: optax.GradientTransformation,
                        max_norm: float) -> optax.GradientTransformation:
  """Gradients rescaled to global norm <= max_norm before `inner` (Pascanu et al., 2013)."""
  return optax.chain(optax.clip_by_global_norm(max_norm), inner)


def zero_nans(inner: optax.GradientTransformation) -> optax.GradientTransformation:
  """NaN gradient entries replaced by 0 before `inner`; the state counts steps that had any."""
  return optax.chain(optax.zero_nans(), inner)
