"""Grain pipelines: process shards, exact eval coverage, skipped records, resume."""
import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from vision_jax.data import digits, pipeline, sources

PP = "decode|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels', 'id')"


def _png(value: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((4, 4), value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


class ListSource:
  """A random-access source of 4x4 images with ids; `bad` records are corrupt."""

  def __init__(self, n: int, bad=()):
    self.n, self.bad = n, set(bad)

  def __len__(self):
    return self.n

  def __getitem__(self, i):
    image = b"not a png" if i in self.bad else _png(i % 256)
    return {"image": image, "label": i % 10, "id": i}


@pytest.fixture
def list_source(monkeypatch):
  def use(n, bad=()):
    monkeypatch.setattr(sources, "open_source", lambda *a, **k: ListSource(n, bad))
  return use


def _spec(batch, split="train", shard=None, workers=0, pp=PP):
  return pipeline.DataSpec(name="fake", split=split, pp=pp, global_batch=batch,
                           num_workers=workers, seed=7, shard=shard)


def _take(data, n):
  it = iter(data)
  return [next(it) for _ in range(n)]


def test_digits_splits_are_stratified_and_disjoint():
  from sklearn.datasets import load_digits
  labels = load_digits().target
  split = digits.split_indices(labels)
  assert (len(split["train"]), len(split["test"])) == (1438, 359)
  assert not set(split["train"]) & set(split["test"])
  counts = np.bincount(labels[split["test"]], minlength=10)
  assert counts.min() >= 35 and counts.max() <= 37


def test_digits_class_splits_partition_their_base_split_by_digit():
  from sklearn.datasets import load_digits
  labels = load_digits().target
  split = digits.all_split_indices(labels)
  for base in ("train", "test"):
    low, high = split[f"{base}_0to4"], split[f"{base}_5to9"]
    assert set(labels[low]) == {0, 1, 2, 3, 4} and set(labels[high]) == {5, 6, 7, 8, 9}
    np.testing.assert_array_equal(np.sort(np.concatenate([low, high])), split[base])
  assert (len(split["train_5to9"]), len(split["test_0to4"])) == (717, 180)


def test_digits_builder_stores_the_sklearn_test_images(tmp_path):
  from sklearn.datasets import load_digits
  data = load_digits()
  expected_idx = digits.split_indices(data.target)["test"]
  source = sources.open_source("sklearn_digits", "test", str(tmp_path))
  assert len(source) == 359
  got = sorted((int(source[i]["label"]), source[i]["image"].tobytes()) for i in range(len(source)))
  want = sorted((int(data.target[i]),
                 np.minimum(np.round(data.images[i] * 16), 255).astype(np.uint8).tobytes())
                for i in expected_idx)
  assert got == want


AUGMENTED = "decode|pad(2)|random_crop(4)|normalize(0.5, 0.5)|onehot(10)|keep('image', 'labels', 'id')"


@pytest.mark.parametrize("pp", [PP, AUGMENTED], ids=["plain", "random_crop"])
def test_two_process_shards_rebuild_the_single_process_batch(list_source, pp):
  list_source(50)
  whole = _take(pipeline.TrainData(_spec(8, pp=pp)), 7)  # Crosses an epoch boundary (6 per epoch).
  halves = [_take(pipeline.TrainData(_spec(8, shard=(p, 2), pp=pp)), 7) for p in range(2)]
  for b in range(7):
    rebuilt = np.concatenate([halves[0][b]["id"], halves[1][b]["id"]])
    np.testing.assert_array_equal(rebuilt, whole[b]["id"])
    np.testing.assert_array_equal(np.concatenate([h[b]["image"] for h in halves]),
                                  whole[b]["image"])
  if pp == AUGMENTED:  # The crops are random: not all the same.
    assert len({tuple(np.flatnonzero(im[..., 0] == -1.0)) for im in whole[0]["image"]}) > 1
  first_epoch = np.concatenate([b["id"] for b in whole[:6]])
  assert len(set(first_epoch.tolist())) == 48  # Shuffled without replacement.
  assert not np.array_equal(whole[0]["id"], np.arange(8))


def test_eval_counts_every_example_once_across_processes(list_source):
  list_source(45)
  seen = []
  for p in range(2):
    n, batches = pipeline.eval_batches(_spec(16, split="test", shard=(p, 2)))
    assert n == 45
    for batch in batches:
      assert batch["image"].shape == (8, 4, 4, 1)
      seen.extend(batch["id"][batch["mask"] > 0].tolist())
  assert sorted(seen) == list(range(45))


def test_malformed_records_are_skipped_and_counted(list_source):
  list_source(20, bad={3, 11})
  n, batches = pipeline.eval_batches(_spec(8, split="test"))
  batches = list(batches)
  skipped = sum(int(b["skipped"].sum()) for b in batches)
  valid = [i for b in batches for i in b["id"][b["mask"] > 0].tolist()]
  assert skipped == 2 and sorted(valid) == sorted(set(range(20)) - {3, 11})
  assert all(b["image"].shape == (8, 4, 4, 1) for b in batches)


def test_all_records_malformed_is_an_error(list_source):
  list_source(5, bad=range(5))
  with pytest.raises(ValueError, match="None of the first 64 records could be preprocessed"):
    pipeline.TrainData(_spec(4))


@pytest.mark.parametrize("workers", [0, 2])
def test_iterator_state_resumes_at_the_next_batch(list_source, workers):
  list_source(40)
  data = pipeline.TrainData(_spec(8, workers=workers))
  _take(data, 3)
  state = data.get_state()
  expected = _take(data, 2)
  data.close()
  resumed = pipeline.TrainData(_spec(8, workers=workers))
  resumed.set_state(state)
  got = _take(resumed, 2)
  resumed.close()
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(a["id"], b["id"])
    np.testing.assert_array_equal(a["image"], b["image"])


def test_real_tfds_name_through_mock_data(tmp_path):
  spec = pipeline.DataSpec(name="cifar10", split="train", global_batch=4, skip_decoding=(),
                           data_dir=str(tmp_path),
                           pp="decode|random_crop(24)|flip_lr|normalize|onehot(10)|keep('image', 'labels')")
  with tfds.testing.mock_data(num_examples=12):
    batch = next(iter(pipeline.TrainData(spec)))
  assert batch["image"].shape == (4, 24, 24, 3) and batch["labels"].shape == (4, 10)
  assert batch["mask"].tolist() == [1.0] * 4


def test_missing_dataset_says_how_to_prepare(tmp_path):
  with pytest.raises(sources.DataMissingError) as info:
    sources.open_source("cifar10", "train", str(tmp_path))
  message = str(info.value)
  assert "TFDS dataset 'cifar10' is not prepared" in message
  assert f"tfds build cifar10 --data_dir={tmp_path} --file_format=array_record" in message
  with pytest.raises(sources.DataMissingError, match="Unknown dataset 'cifar11'"):
    sources.open_source("cifar11", "train", str(tmp_path))


def test_classification_accuracy_counts_unreadable_records_as_errors(list_source):
  from vision_jax.tasks.classification.evaluator import ClassificationEvaluator
  from vision_jax.tasks.classification.linear_transfer import LinearTransferEvaluator
  list_source(40, bad={5, 17})

  def oracle(variables, batch):  # Right on every record it can read.
    labels = np.argmax(batch["labels"], -1)
    return {"top_k": labels[:, None], "label": labels, "mask": batch["mask"],
            "skipped": batch["skipped"], "features": np.eye(10)[labels] + 0.01 * batch["id"][:, None]}

  from vision_jax.evaluators.base import on_host
  metrics = ClassificationEvaluator(on_host(oracle), data=_spec(16, split="test"),
                                    top_k=(1,)).run({})
  assert metrics == {"top1_accuracy": 38 / 40, "skipped_examples": 2.0}
  transfer = LinearTransferEvaluator(oracle, data=_spec(16, split="test"), fit_split="train").run({})
  assert transfer["top1_accuracy"] == 38 / 40 and transfer["skipped_examples"] == 4.0


def test_drop_empty_on_a_dataset_without_objects_is_an_error_naming_it():
  with pytest.raises(ValueError, match="drop_empty needs detection records with an 'objects'"):
    sources.open_source("sklearn_digits", "test", None, ("image",), drop_empty=True)
