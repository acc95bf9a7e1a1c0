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
`mask=0, skipped=0` examples, so every real example counts exactly once; eval
examples carry their record index (`record`, -1 for padding).

With `canvases`, batches are grouped by aspect ratio (`grouping`): positions
map to (record, group) instead of a shuffled range, the record gets its
group's canvas as the feature `canvas` (for the `pad_to_canvas` pp op), and
each group has its own example template.
"""
import dataclasses
import math
from typing import Any, Iterator

import grain
import jax
import numpy as np
from absl import flags, logging

from vision_jax import metrics
from vision_jax.batch import CANVAS, COUNT_PREFIX, MASK, RECORD, SKIPPED
from vision_jax.data import grouping, sources
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
  """Record index, or (record index, group), -> preprocessed example with
  `mask` and `skipped` flags (and `record` for eval)."""

  def __init__(self, source, preprocess: Preprocess, templates: list[dict | None],
               num_records: int, canvases: tuple = (), with_record: bool = False):
    self.source, self.preprocess = source, preprocess
    self.templates, self.num_records = templates, num_records
    self.canvases, self.with_record = canvases, with_record

  @property
  def template(self) -> dict:
    """The first group's (the only one without canvases)."""
    return next(t for t in self.templates if t is not None)

  def _filler(self, template: dict, index: int, skipped: bool) -> dict:
    out = {k: np.zeros_like(v) for k, v in template.items()}
    out[SKIPPED] = np.int32(skipped)
    if self.with_record:
      out[RECORD] = np.int32(index if skipped else grouping.NO_RECORD)
    return out

  def record(self, index: int, group: int) -> dict:
    record = dict(self.source[index])
    if self.canvases:
      record[CANVAS] = np.asarray(self.canvases[group], np.int32)
    return record

  def __call__(self, item, rng: np.random.Generator) -> dict:
    index, group = item if isinstance(item, tuple) else (int(item), 0)
    template = self.templates[group]
    if index < 0 or index >= self.num_records:  # Eval padding.
      return self._filler(template, index, skipped=False)
    try:
      example = self.preprocess(self.record(index, group), rng)
      if set(example) != set(template) - {MASK, SKIPPED}:
        raise ValueError(f"features {sorted(example)} differ from {sorted(template)}")
      out = {k: np.asarray(v, template[k].dtype) for k, v in example.items()}
      for k, v in out.items():
        if v.shape != template[k].shape:
          raise ValueError(f"feature {k!r} has shape {v.shape}, expected {template[k].shape}")
    except Exception as e:  # pylint: disable=broad-except
      logging.warning("Skipping record %d (%s: %s); counted in data/skipped.",
                      index, type(e).__name__, e)
      return self._filler(template, index, skipped=True)
    out[MASK], out[SKIPPED] = np.float32(1.0), np.int32(0)
    if self.with_record:
      out[RECORD] = np.int32(index)
    return out


def example_template(source, preprocess: Preprocess, tries: int = 64,
                     records=None, canvas=None) -> dict:
  """Shapes and dtypes of a preprocessed example, from the first that works
  among `records` (default: the first ones), padded to `canvas` if given."""
  error = None
  records = range(len(source)) if records is None else records
  for index in list(records[:tries]):
    try:
      record = dict(source[int(index)])
      if canvas is not None:
        record[CANVAS] = np.asarray(canvas, np.int32)
      example = preprocess(record, np.random.default_rng(0))
    except Exception as e:  # pylint: disable=broad-except
      error = e
      continue
    template = {k: np.zeros_like(canonical(v)) for k, v in example.items()}
    template[MASK] = np.float32(0.0)
    return template
  which = "" if canvas is None else f" of the canvas {tuple(canvas)} group"
  raise ValueError(f"None of the first {tries} records{which} could be preprocessed with "
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
  canvases: tuple[tuple[int, int], ...] = ()  # Aspect-ratio groups' canvases; (): no grouping.

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


def _loader(spec: DataSpec, with_record: bool = False):
  """(source, LoadExample, groups: int [N] or None without canvases)."""
  source = sources.open_source(spec.name, spec.split, spec.data_dir, spec.skip_decoding,
                               drop_empty=spec.drop_empty)
  if not len(source):
    raise ValueError(f"{spec.name}:{spec.split} has no records"
                     f"{' with annotations' if spec.drop_empty else ''} ({spec.where}).")
  preprocess = Preprocess(spec.pp, spec.where)
  if not spec.canvases:
    template = example_template(source, preprocess)
    return source, LoadExample(source, preprocess, [template], len(source),
                               with_record=with_record), None
  canvases = grouping.check_canvases(spec.canvases)
  groups = grouping.assign_groups(
      grouping.image_sizes(source, f"{spec.name}:{spec.split}"), canvases)
  templates = [example_template(source, preprocess, records=np.flatnonzero(groups == g),
                                canvas=canvas) if np.any(groups == g) else None
               for g, canvas in enumerate(canvases)]
  load = LoadExample(source, preprocess, templates, len(source), canvases, with_record)
  return source, load, groups


def check(spec: DataSpec) -> dict:
  """Opens the split and preprocesses its first good record, as a run will:
  a missing dataset or split, or a pp chain that fails on every one of the
  first records, raises here. Returns the example template."""
  return _loader(spec)[1].template


class TrainData:
  """Endless shuffled, augmented local batches with a checkpointable position."""

  def __init__(self, spec: DataSpec):
    self.spec = spec
    source, load, groups = _loader(spec)
    self.template = load.template  # Per-example arrays (zeros) of the batch features.
    self.templates = load.templates  # One per canvas group (None for an empty group).
    self.num_examples = len(source)
    self.empty_dropped = int(getattr(source, "empty_dropped", 0))
    if spec.drop_empty:
      metrics.log(f"{spec.name}:{spec.split}: training on the {self.num_examples} images with "
                  f"annotations; {self.empty_dropped} without any left out (drop_empty).")
    local = _local_batch(spec)
    if groups is None:
      self.steps_per_epoch = max(1, self.num_examples // spec.global_batch)
      ds = grain.MapDataset.range(self.num_examples).shuffle(seed=spec.seed)
    else:
      ds = grouping.GroupedOrder(groups, len(spec.canvases), spec.global_batch, spec.seed,
                                 shuffle=True)
      self.steps_per_epoch = len(ds) // spec.global_batch
      metrics.log(f"{spec.name}:{spec.split}: global batches per epoch by canvas "
                  f"{dict(zip(map(tuple, spec.canvases), ds.batches_per_group()))}.")
    ds = ds.repeat(None)
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
  """(number of real examples, local batches covering each exactly once);
  each example's `record` is its record index (-1: padding)."""
  source, load, groups = _loader(spec, with_record=True)
  local = _local_batch(spec)
  if groups is None:
    padded = math.ceil(len(source) / spec.global_batch) * spec.global_batch
    ds = grain.MapDataset.range(padded)
  else:
    ds = grouping.GroupedOrder(groups, len(spec.canvases), spec.global_batch, spec.seed,
                               shuffle=False)
    padded = len(ds)
  ds = ds.random_map(load, seed=spec.seed)
  ds = ProcessShard(ds, *spec.process(), local).batch(local, drop_remainder=True)
  batches = metrics.with_progress(iter(_to_iter(ds, spec)), padded // spec.global_batch,
                                  f"eval {spec.name}:{spec.split} batches")
  return len(source), batches
