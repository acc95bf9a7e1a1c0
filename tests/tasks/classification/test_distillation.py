"""A task that owns its loss: knowledge distillation from a frozen teacher of
config.teachers, loaded from a checkpoint, never updated, run inside the one
jitted step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vision_jax import checkpoint, config as config_lib, metrics, train
from vision_jax.tasks.base import StepContext, Teacher
from vision_jax.tasks.classification.distillation import DistillationTask, soft_cross_entropy
from test_train import saved_state
from tiny_config import tiny_config


def test_soft_cross_entropy_is_the_kl_of_tempered_softmaxes():
  rng = np.random.default_rng(0)
  zs, zt, t = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)) * 3, 2.5
  p = np.exp(zt / t) / np.exp(zt / t).sum(-1, keepdims=True)
  q = np.exp(zs / t) / np.exp(zs / t).sum(-1, keepdims=True)
  np.testing.assert_allclose(soft_cross_entropy(jnp.asarray(zs), jnp.asarray(zt), t),
                             np.sum(p * np.log(p / q), -1), rtol=1e-5)


class _Logits:
  """A 'model' whose logits are its parameter (or, for the teacher, its variable)."""

  def apply(self, variables, images, *, train, rngs=None):
    del train, rngs
    return jnp.broadcast_to(variables["params"]["z"], (images.shape[0], 3)), {}


def test_loss_is_hinton_kd_and_only_the_student_gets_gradients():
  task = DistillationTask(alpha=0.3, temperature=2.0)
  zs, zt = jnp.asarray([0.5, -1.0, 2.0]), jnp.asarray([1.0, 0.0, -1.0])
  batch = {"image": jnp.zeros((2, 1, 1, 1)), "labels": jax.nn.one_hot(jnp.asarray([2, 0]), 3),
           "mask": jnp.asarray([1.0, 1.0])}
  ctx = StepContext(_Logits(), {}, jax.random.PRNGKey(0),
                    {"teacher": Teacher(_Logits(), {"params": {"z": zt}})})
  loss, (m, _) = task.train_loss(ctx, {"z": zs}, batch, None)
  log_q = np.log(np.exp(zs) / np.exp(zs).sum())
  hard = -(log_q[2] + log_q[0]) / 2
  soft = float(soft_cross_entropy(zs[None], zt[None], 2.0)[0])
  np.testing.assert_allclose(loss, 0.7 * hard + 0.3 * 4.0 * soft, rtol=1e-5)
  np.testing.assert_allclose([m["hard_loss"], m["soft_loss"]], [hard, soft], rtol=1e-5)
  assert float(m["teacher_agreement"]) == 0.0  # argmax 2 vs 0.
  grad = jax.grad(lambda p: task.train_loss(ctx, p, batch, None)[0])({"z": zs})
  assert np.all(np.isfinite(grad["z"])) and np.any(grad["z"] != 0)
  with pytest.raises(KeyError, match=r"No teacher 'other'; config.teachers has \['teacher'\]"):
    DistillationTask(teacher="other").train_loss(ctx, {"z": zs}, batch, None)


TEACHER = {"stage_sizes": (1, 1), "width": 8, "num_classes": 10, "small_input": True}


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("teacher")
  train.run(tiny_config(total_steps=40, checkpoint_every_steps=40), str(workdir))
  return str(workdir / checkpoint.CHECKPOINT_DIR / "40"), saved_state(workdir)


def _student(path, **overrides):
  return tiny_config(**{"task.name": "distillation", "task.alpha": 0.9, "task.temperature": 2.0,
                        "model.width": 4, "teachers.teacher": {
                            "model": "resnet18", "model_args": TEACHER, "path": path},
                        **overrides})


def test_student_follows_the_teacher_from_a_checkpoint(teacher_checkpoint, tmp_path):
  path, saved = teacher_checkpoint
  s = train.setup(_student(path))
  teacher = s.teachers["teacher"]
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(teacher.variables["params"]),
               saved["params"])
  jax.tree.map(np.testing.assert_array_equal,
               jax.device_get(teacher.variables["batch_stats"]), saved["model_state"]["batch_stats"])
  s.close()
  train.run(_student(path), str(tmp_path))
  rows = [r for r in metrics.read_metrics(tmp_path) if "train/soft_loss" in r]
  assert rows[-1]["train/soft_loss"] < rows[0]["train/soft_loss"]
  assert rows[-1]["train/teacher_agreement"] > rows[0]["train/teacher_agreement"]
  # The student's checkpoint holds the student (width 4) only, not the width-8 teacher.
  student = saved_state(tmp_path)
  assert student["params"]["stem_conv"]["kernel"].shape == (3, 3, 1, 4)
  assert sorted(student) == ["model_state", "opt_state", "params", "rng", "step"]


def test_a_teacher_that_does_not_fit_fails_before_compute(teacher_checkpoint):
  path, _ = teacher_checkpoint
  wider = {**TEACHER, "width": 16}
  with pytest.raises(config_lib.ConfigError, match=r"config.teachers.teacher: .*40 \(ResNet\) does "
                                                   r"not fit the model: 19 mismatched: "
                                                   r"params/head/kernel: \(16, 10\) vs \(32, 10\)"):
    train.setup(_student(path, **{"teachers.teacher.model_args": wider}))
  with pytest.raises(config_lib.ConfigError, match=r"Unknown config key 'teachers.teacher.pth'"):
    config_lib.validate(_student(path, **{"teachers.teacher.pth": "x"}))
