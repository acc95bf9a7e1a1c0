"""Optax optimizer from config: sgd+momentum, Adam, AdamW, LAMB with decay masks
and clipping; parameters matching `optimizer.grassmann.params` (GCR class
subspaces) get Riemannian SGD on the Grassmannian instead (optim/riemannian.py)."""
import re

import jax
import optax

from vision_jax import config as config_lib, registry
from vision_jax.optim import riemannian
from vision_jax.sharding import path_name


def decay_mask(params, exclude: str | None):
  """True for parameters to decay: those whose path does not match `exclude`."""
  pattern = re.compile(exclude) if exclude else None
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not (pattern and pattern.fullmatch(path_name(path))), params)


def sgd(lr, cfg, mask):
  """SGD with (Nesterov) momentum; weight decay is coupled L2, as in ResNet recipes."""
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay, mask) if cfg.weight_decay else optax.identity(),
      optax.sgd(lr, momentum=cfg.momentum or None, nesterov=cfg.nesterov))


def adam(lr, cfg, mask):
  """Adam (Kingma & Ba, arXiv:1412.6980) with coupled L2 decay, as torch.optim.Adam."""
  return optax.chain(
      optax.add_decayed_weights(cfg.weight_decay, mask) if cfg.weight_decay else optax.identity(),
      optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))


def adamw(lr, cfg, mask):
  """AdamW (Loshchilov & Hutter, arXiv:1711.05101): decoupled decay."""
  return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                     mask=mask)


def lamb(lr, cfg, mask):
  """LAMB (You et al., arXiv:1904.00962): layer-wise trust ratio over Adam."""
  return optax.lamb(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                    mask=mask)


def make_schedule(schedule_cfg, peak: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
  fn = registry.SCHEDULES.get(schedule_cfg.name)
  return fn(peak, total_steps, warmup_steps, **{k: v for k, v in schedule_cfg.items()
                                                if k not in ("name", "warmup_steps", "warmup_epochs")})


def make_optimizer(opt_cfg, schedule: optax.Schedule, params) -> optax.GradientTransformation:
  """The optimizer for `params` (a pytree or its shapes); `schedule` gives the lr.
  Decay masks and clipping cover the non-Grassmann parameters only."""
  mask = lambda p: decay_mask(p, opt_cfg.weight_decay_exclude)
  core = registry.OPTIMIZERS.get(opt_cfg.name)(schedule, opt_cfg, mask)
  if opt_cfg.grad_clip_norm:
    core = optax.chain(optax.clip_by_global_norm(opt_cfg.grad_clip_norm), core)
  g = opt_cfg.grassmann
  subspaces = riemannian.grassmann_sgd(riemannian.scaled(schedule, g.lr_factor), g.momentum,
                                       g.reorth_every, g.retraction)
  try:
    return riemannian.with_grassmann(core, subspaces, params, g.params)
  except ValueError as e:
    raise config_lib.ConfigError(f"'optimizer.grassmann.params' = {g.params!r}: {e}") from None
