"""GMP's cubic schedule and the cosine drop fraction: the reference values."""
import pytest

from vision_jax.sparsity import schedules


def test_gmp_cubic_schedule_reference_values():
  """Zhu & Gupta's s_t with s_i = 0, s_f = 0.9 over steps 0..1000 (reference notes)."""
  at = lambda t: float(schedules.gmp_sparsity(t, final=0.9, begin=0, end=1000))
  assert at(100) == pytest.approx(0.2439, abs=1e-12)
  assert at(500) == pytest.approx(0.7875, abs=1e-12)
  assert (at(-5), at(0), at(1000), at(5000)) == (0.0, 0.0, 0.9, 0.9)
  assert float(schedules.gmp_sparsity(250, final=0.9, begin=200, end=300, initial=0.5)) == (
      pytest.approx(0.9 - 0.4 * 0.5**3))
  with pytest.raises(ValueError, match="end > begin"):
    schedules.gmp_sparsity(0, 0.9, begin=10, end=10)


def test_masks_update_every_frequency_steps_from_begin_and_at_end():
  steps = [t for t in range(0, 400) if schedules.updates_at(t, 100, 300, 50)]
  assert steps == [100, 150, 200, 250, 300]
  steps = [t for t in range(0, 400) if schedules.updates_at(t, 7, 46, 10)]
  assert steps == [7, 17, 27, 37, 46]  # The end too: the cubic's target is reached.


def test_cosine_drop_fraction_from_half_to_graNets_floor():
  f = lambda t: float(schedules.cosine_drop_fraction(t, total=1000))
  assert (f(0), f(1000), f(2000)) == (0.5, 0.005, 0.005)
  assert f(500) == pytest.approx(0.005 + 0.495 / 2, abs=1e-12)
