"""Every split a run reads is opened and checked before step 0; --mode=eval
needs no train split; unreadable annotation files are named."""
import json
import os

import pytest

from vision_jax import checkpoint, train
from vision_jax.data import coco, sources
from test_coco_evaluator import write_coco_folder
from tiny_config import tiny_config
from configs import pvt_coco


def test_a_misspelled_eval_split_stops_the_run_before_step_0(tmp_path):
  with pytest.raises(sources.DataMissingError, match="has no split 'tset'; it has train, test"):
    train.run(tiny_config(**{"data.eval_split": "tset"}), str(tmp_path))
  assert not (tmp_path / checkpoint.CHECKPOINT_DIR).exists()


def test_an_eval_chain_that_fails_on_every_record_stops_the_run_before_step_0(tmp_path):
  pp = "decode|normalize(0.5, 0.5)|pad_to(4, 4)|onehot(10)|keep('image', 'labels')"
  evaluators = {"eval": {"kind": "classification", "pp": pp}}
  with pytest.raises(ValueError, match=r"None of the first 64 records could be preprocessed with "
                                       r".*\(evaluators\.eval\.pp\).*larger than the 4x4 canvas"):
    train.run(tiny_config(evaluators=evaluators), str(tmp_path))
  assert not (tmp_path / checkpoint.CHECKPOINT_DIR).exists()


@pytest.fixture
def coco_train_only(tmp_path):
  """A COCO folder with train2017 and, for now, no val2017 annotations."""
  root = write_coco_folder(str(tmp_path / "coco"), split="train2017")
  os.makedirs(os.path.join(root, "val2017"))
  config = pvt_coco.get_config("variant=tiny,coco=folder")
  config.data.data_dir = root
  return root, config


def test_a_missing_val_annotation_file_fails_at_start_up(coco_train_only):
  _, config = coco_train_only
  with pytest.raises(sources.DataMissingError, match=r"no split 'val2017': expected the "
                                                     r"annotations at .*instances_val2017\.json"):
    train.setup(config)


def test_malformed_annotation_json_names_the_file_and_position(coco_train_only):
  root, config = coco_train_only
  path = os.path.join(root, "annotations", "instances_val2017.json")
  with open(path, "w", encoding="utf-8") as f:
    f.write('{"images": [{"id": 1,\n "file_name": "1.png",, }]}')
  with pytest.raises(coco.AnnotationFormatError,
                     match=r"instances_val2017\.json is not valid JSON: Expecting property name "
                           r"enclosed in double quotes at line 2, column 23 \(byte 44 of 49\)"):
    train.setup(config)


def test_eval_mode_needs_no_train_split(tmp_path):
  trained = train.run(tiny_config(), str(tmp_path))
  config = tiny_config(**{"data.train_split": "no_such_split"})
  with pytest.raises(sources.DataMissingError, match="no_such_split"):
    train.setup(config)
  evaluated = train.run(config, str(tmp_path), mode="eval")
  assert evaluated["eval/top1_accuracy"] == trained["eval/top1_accuracy"]
  with open(tmp_path / train.EVAL_RESULTS_FILE, encoding="utf-8") as f:
    assert json.load(f)["step"] == 20
