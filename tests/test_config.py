"""Config schema: every malformed config fails before compute, naming the key."""
import ml_collections
import pytest

from vision_jax import config as config_lib
from vision_jax.config import ConfigError

from tiny_config import tiny_config


def _error(config) -> str:
  with pytest.raises(ConfigError) as info:
    config_lib.validate(config)
  return str(info.value)


def test_tiny_config_is_valid():
  config_lib.validate(tiny_config())


def test_misspelled_key_names_nearest():
  c = tiny_config()
  c.optimizer.lerning_rate = 0.1
  assert _error(c) == ("Unknown config key 'optimizer.lerning_rate'. "
                       "Did you mean 'optimizer.learning_rate'?")


def test_misspelled_top_level_key():
  c = tiny_config()
  c.totl_steps = 5
  assert "Unknown config key 'totl_steps'. Did you mean 'total_steps'?" == _error(c)


def test_wrong_type_names_key_and_type():
  raw = tiny_config().to_dict()  # A config assembled without the base, e.g. from JSON.
  raw["data"]["batch_size"] = "32"
  message = _error(ml_collections.ConfigDict(raw))
  assert "'data.batch_size' must be int, got str '32'" in message


def test_model_argument_checked_against_constructor():
  c = tiny_config()
  c.model.widht = 8
  message = _error(c)
  assert message.startswith("Unknown config key 'model.widht'. Did you mean 'width'?")


def test_unknown_model_name():
  c = tiny_config(**{"model.name": "resnet81"})
  assert "Unknown model 'resnet81'. Did you mean 'resnet18'?" in _error(c)


def test_unknown_pp_op():
  c = tiny_config(**{"data.pp_train": "decode|normalise(0.5)"})
  message = _error(c)
  assert "data.pp_train" in message and "Did you mean 'normalize'?" in message


def test_bad_pp_arguments():
  c = tiny_config(**{"data.pp_eval": "decode|resize(16, wrong=1)"})
  assert "data.pp_eval: bad arguments for 'resize'" in _error(c)


def test_duration_needs_exactly_one_unit():
  c = tiny_config(total_epochs=2.0)
  assert _error(c) == "Set only one of 'total_steps' and 'total_epochs'."
  c = tiny_config(total_steps=None)
  assert _error(c) == "Set one of 'total_steps' or 'total_epochs'."


def test_evaluator_kind_and_arguments():
  c = tiny_config()
  c.evaluators.val = {"kind": "clasification"}
  assert "Did you mean 'classification'?" in _error(c)
  c.evaluators.val = {"kind": "classification", "top_kk": (1,)}
  assert "Unknown config key 'evaluators.val.top_kk'. Did you mean 'top_k'?" in _error(c)


def test_accumulation_must_divide_batch():
  c = tiny_config(**{"optimizer.accum_steps": 3})
  assert "must be divisible by 'optimizer.accum_steps' (3)" in _error(c)


@pytest.mark.parametrize("rules, message", [
    (((".*", ("fdsp",)),), "'partition_rules[0]' = ('.*', ('fdsp',)): unknown mesh axis 'fdsp'. "
                           "Did you mean 'fsdp'? Axes: data, fsdp, model."),
    (((".*/kernel", (None, "modle")), (".*", ())), "'partition_rules[0]' = ('.*/kernel', (None, "
                                                   "'modle')): unknown mesh axis 'modle'."),
    ((("(", ()),), "'partition_rules[0]' = ('(', ()): bad regex"),
    ((("x",),), "'partition_rules[0]' = ('x',): expected (regex, spec)."),
    (((".*", 3),), "'partition_rules[0]' = ('.*', 3): spec must be"),
])
def test_partition_rules_name_mesh_axes(rules, message):
  assert message in _error(tiny_config(partition_rules=rules))


def test_parse_arg_values_and_errors():
  arg = config_lib.parse_arg("variant=r50,demo,lr=0.5", variant="r18", demo=False, lr=0.1)
  assert (arg.variant, arg.demo, arg.lr) == ("r50", True, 0.5)
  with pytest.raises(ConfigError, match="Unknown config argument 'demp'. Did you mean 'demo'?"):
    config_lib.parse_arg("demp", demo=False)
  with pytest.raises(ConfigError, match="expected float"):
    config_lib.parse_arg("lr=fast", lr=0.1)


def test_resolve_steps_from_epochs():
  c = tiny_config(total_steps=None, total_epochs=2.5)
  assert config_lib.resolve_steps(c, "total", steps_per_epoch=44) == 110
  assert config_lib.resolve_steps(c.schedule, "warmup", steps_per_epoch=44) == 2


def test_experiment_configs_validate():
  import pathlib
  root = pathlib.Path(__file__).parent.parent / "configs"
  for name, args in (("resnet/digits", ["", "variant=r18d,demo", "variant=r50"]),
                     ("resnet/imagenet", ["", "variant=r18,batch=256"]),
                     ("retinanet/coco", ["", "variant=r50", "variant=large,coco=folder"]),
                     ("gcr/imagenet", ["", "head=softmax", "k=16,variant=r50", "demo",
                                       "demo,head=softmax", "transfer=cifar100,"
                                       "transfer_classes=100"])):
    for arg in args:
      config_lib.validate(config_lib.load(f"{root / name}.py:{arg}"))
    with pytest.raises(ConfigError, match="variant='r19'"):
      config_lib.load(f"{root / name}.py:variant=r19")
  with pytest.raises(ConfigError, match="No config file 'configs/nope.py'"):
    config_lib.load("configs/nope.py:demo")


def test_default_workdir_names_the_config_and_its_arguments():
  from vision_jax import main  # pylint: disable=import-outside-toplevel
  assert main.default_workdir("configs/pvt_coco.py") == "workdirs/pvt_coco"
  assert main.default_workdir("configs/gcr/imagenet.py:demo") == "workdirs/gcr_imagenet_demo"
  assert main.default_workdir("/x/exp.py") == "workdirs/exp"
  assert main.default_workdir("configs/pvt_coco.py:variant=small,batch=8") == \
      "workdirs/pvt_coco_variant-small-batch-8"
