"""Learning-rate schedules: linear warmup from `warmup_start_factor * peak`
(0 by default; mmdetection's `warmup_ratio`), then constant, cosine, steps
or polynomial decay."""
import optax


def _with_warmup(peak: float, warmup: int, after: optax.Schedule,
                 start_factor: float = 0.0) -> optax.Schedule:
  if warmup <= 0:
    return after
  return optax.join_schedules([optax.linear_schedule(start_factor * peak, peak, warmup), after],
                              [warmup])


def constant(peak: float, total: int, warmup: int, warmup_start_factor: float = 0.0,
             **_) -> optax.Schedule:
  return _with_warmup(peak, warmup, optax.constant_schedule(peak), warmup_start_factor)


def cosine(peak: float, total: int, warmup: int, end_factor: float = 0.0,
           warmup_start_factor: float = 0.0, **_) -> optax.Schedule:
  """Half-cosine from `peak` to `end_factor * peak` over the post-warmup steps
  (Loshchilov & Hutter, SGDR, arXiv:1608.03983, Eq. 5 without restarts)."""
  decay = optax.cosine_decay_schedule(peak, max(total - warmup, 1), alpha=end_factor)
  return _with_warmup(peak, warmup, decay, warmup_start_factor)


def step(peak: float, total: int, warmup: int, boundaries=(0.5, 0.75),
         decay_factor: float = 0.1, warmup_start_factor: float = 0.0, **_) -> optax.Schedule:
  """`peak`, multiplied by `decay_factor` at each boundary (fractions of `total`)."""
  scales = {max(int(round(b * total)) - warmup, 1): decay_factor for b in boundaries}
  return _with_warmup(peak, warmup, optax.piecewise_constant_schedule(peak, scales),
                      warmup_start_factor)


def poly(peak: float, total: int, warmup: int, power: float = 1.0, end_factor: float = 0.0,
         warmup_start_factor: float = 0.0, **_) -> optax.Schedule:
  """mmcv's `PolyLrUpdaterHook` by iteration: (peak - end) (1 - t / T)^power + end
  over the post-warmup steps, end = `end_factor * peak` (mmseg: power 0.9, min_lr 0)."""
  decay = optax.polynomial_schedule(peak, end_factor * peak, power, max(total - warmup, 1))
  return _with_warmup(peak, warmup, decay, warmup_start_factor)
