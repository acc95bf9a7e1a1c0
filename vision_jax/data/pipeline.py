"""Grain pipelines: per-process shards of global batches, robust to bad records.

Global batch b holds shuffled positions [b*B, (b+1)*B); process p reads rows
[p*B/P, (p+1)*B/P) of it, so P processes together see exactly the batches one
process would. Shuffling (`MapDataset.shuffle` after nothing but the record
range, reshuffled per epoch) and augmentation (`random_map`, seeded per
position) depend only on the seed and the position, so the iterator state is a
position and a resumed run continues with the very next batch.

A record that cannot be read or preprocessed is replaced by a zero example
with `mask=0, skipped=1`: the batch shape stays fixed, the loss ignores it and
the trainer counts it. Eval pads the split to whole global batches with
`mask=0, skipped=0` examples, so every real example counts exactly once.
"""
import dataclasses
import math
from typing import Any, Iterator

import grain
import jax
import numpy as np
from absl import flags, logging

from vision_jax import metrics
from vision_jax.batch import COUNT_PREFIX, MASK, SKIPPED
from vision_jax.data import sources
from vision_jax.data.transforms import Preprocess

# JAX's default dtypes: 64-bit features are stored as their 32-bit kind.
_CANONICAL = {np.dtype(np.int64): np.int32, np.dtype(np.uint64): np.uint32,
              np.dtype(np.float64): np.float32}


def canonical(value) -> np.ndarray:
  value = np.asarray(value)
  return value.astype(_CANONICAL.get(value.dtype, value.dtype), copy=False)


class ProcessShard(grain.MapDataset):
  """Process `index` of `count`'s rows of consecutive global batches."""

  def __init__(self, parent: grain.MapDataset, index: int, count: int, local_batch: int):
    super().__init__(parent)
    self._index, self._count, self._local = index, count, local_batch

  def __len__(self) -> int:
    return len(self._parent) // self._count

  def __getitem__(self, position):
    if isinstance(position, slice):
      return self.slice(position)
    batch, row = divmod(position, self._local)
    return self._parent[(batch * self._count + self._index) * self._local + row]

  def __str__(self) -> str:
    return f"ProcessShard(index={self._index}, count={self._count}, local_batch={self._local})"


class LoadExample:
  """Record index -> preprocessed example with `mask` and `skipped` flags."""

  def __init__(self, source, preprocess: Preprocess, template: dict, num_records: int):
    self.source, self.preprocess = source, preprocess
    self.template, self.num_records = template, num_records

  def _filler(self, skipped: bool) -> dict:
    out = {k: np.zeros_like(v) for k, v in self.template.items()}
    out[SKIPPED] = np.int32(skipped)
    return out

  def __call__(self, index, rng: np.random.Generator) -> dict:
    index = int(index)
    if index >= self.num_records:  # Eval padding.
      return self._filler(skipped=False)
    try:
      example = self.preprocess(dict(self.source[index]), rng)
      if set(example) != set(self.template) - {MASK, SKIPPED}:
        raise ValueError(f"features {sorted(example)} differ from {sorted(self.template)}")
      out = {k: np.asarray(v, self.template[k].dtype) for k, v in example.items()}
      for k, v in out.items():
        if v.shape != self.template[k].shape:
          raise ValueError(f"feature {k!r} has shape {v.shape}, expected {self.template[k].shape}")
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Skipping record %d (%s: %s); counted in data/skipped.",
                      index, type(e).__name__, e)
      return self._filler(skipped=True)
    out[MASK], out[SKIPPED] = np.float32(1.0), np.int32(0)
    return out


def example_template(source, preprocess: Preprocess, tries: int = 64) -> dict:
  """Shapes and dtypes of a preprocessed example, from the first that works."""
  error = None
  for index in range(min(tries, len(source))):
    try:
      example = preprocess(dict(source[index]), np.random.default_rng(0))
    except Exception as e:  # pylint: disable=broad-except
      error = e
      continue
    template = {k: np.zeros_like(canonical(v)) for k, v in example.items()}
    template[MASK] = np.float32(0.0)
    return template
  raise ValueError(f"None of the first {tries} records could be preprocessed with "
                   f"{preprocess.spec!r} ({preprocess.where}): {error!r}")


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """Which records and how: one dataset split through one pp string."""
  name: str
  split: str
  pp: str
  global_batch: int
  data_dir: str | None = None
  skip_decoding: tuple[str, ...] = ("image",)
  num_workers: int = 0
  prefetch: int = 2
  seed: int = 0
  where: str = "pp"
  shard: tuple[int, int] | None = None  # (process index, count); None: JAX's.
  drop_empty: bool = False  # Detection: only images with an annotation (mmdet filter_empty_gt).

  def process(self) -> tuple[int, int]:
    return self.shard or (jax.process_index(), jax.process_count())


def _local_batch(spec: DataSpec) -> int:
  count = spec.process()[1]
  if spec.global_batch % count:
    raise ValueError(f"Global batch {spec.global_batch} is not divisible by {count} processes.")
  return spec.global_batch // count


def _to_iter(ds: grain.MapDataset, spec: DataSpec) -> grain.IterDataset:
  it_ds = ds.to_iter_dataset()
  if spec.num_workers > 0:
    if not flags.FLAGS.is_parsed():  # Grain's workers read absl flags; notebooks have none.
      flags.FLAGS.mark_as_parsed()
    it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=spec.num_workers, per_worker_buffer_size=spec.prefetch))
  return it_ds


def _loader(spec: DataSpec):
  source = sources.open_source(spec.name, spec.split, spec.data_dir, spec.skip_decoding,
                               drop_empty=spec.drop_empty)
  if not len(source):
    raise ValueError(f"{spec.name}:{spec.split} has no records"
                     f"{' with annotations' if spec.drop_empty else ''} ({spec.where}).")
  preprocess = Preprocess(spec.pp, spec.where)
  return source, LoadExample(source, preprocess, example_template(source, preprocess), len(source))


def check(spec: DataSpec) -> dict:
  """Opens the split and preprocesses its first good record, as a run will:
  a missing dataset or split, or a pp chain that fails on every one of the
  first records, raises here. Returns the example template."""
  return _loader(spec)[1].template


class TrainData:
  """Endless shuffled, augmented local batches with a checkpointable position."""

  def __init__(self, spec: DataSpec):
    self.spec = spec
    source, load = _loader(spec)
    self.template = load.template  # Per-example arrays (zeros) of the batch features.
    self.num_examples = len(source)
    self.empty_dropped = int(getattr(source, "empty_dropped", 0))
    if spec.drop_empty:
      metrics.log(f"{spec.name}:{spec.split}: training on the {self.num_examples} images with "
                  f"annotations; {self.empty_dropped} without any left out (drop_empty).")
    self.steps_per_epoch = max(1, self.num_examples // spec.global_batch)
    local = _local_batch(spec)
    ds = grain.MapDataset.range(self.num_examples).shuffle(seed=spec.seed).repeat(None)
    # Augmentation randomness from the global position (before the process
    # shard, which is lazy): any number of processes draws the same crops.
    ds = ds.random_map(load, seed=spec.seed)
    ds = ProcessShard(ds, *spec.process(), local).batch(local, drop_remainder=True)
    self._dataset = _to_iter(ds, spec)
    self._iterator = None

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    if self._iterator is None:
      self._iterator = iter(self._dataset)
    return self._iterator

  def get_state(self) -> dict[str, Any]:
    """The position after the last batch taken; the same on every process."""
    return iter(self).get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    iter(self).set_state(state)

  def close(self) -> None:
    if self._iterator is not None and hasattr(self._iterator, "close"):
      self._iterator.close()
    self._iterator = None


def eval_batches(spec: DataSpec) -> tuple[int, Iterator[dict[str, np.ndarray]]]:
  """(number of real examples, local batches covering each exactly once)."""
  source, load = _loader(spec)
  local = _local_batch(spec)
  padded = math.ceil(len(source) / spec.global_batch) * spec.global_batch
  ds = grain.MapDataset.range(padded).random_map(load, seed=spec.seed)
  ds = ProcessShard(ds, *spec.process(), local).batch(local, drop_remainder=True)
  batches = metrics.with_progress(iter(_to_iter(ds, spec)), padded // spec.global_batch,
                                  f"eval {spec.name}:{spec.split} batches")
  return len(source), batches
