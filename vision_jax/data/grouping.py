"""Aspect-ratio groups: each global batch holds images of one group, padded to
that group's fixed canvas (mmdetection's GroupSampler,
mmdet/datasets/samplers/group_sampler.py, with fixed canvases instead of
per-batch padding, so each canvas compiles once).

An image of height h and width w joins the canvas (H, W) whose aspect ratio
W / H is nearest to w / h on a log scale, ties to the earlier canvas. With the
two canvases ((800, 1344), (1344, 800)) that is mmdet's flag, w > h is
landscape and w < h portrait, except that squares, which mmdet counts as
portrait, go with the first canvas (either holds them).

`GroupedOrder` maps a position to (record, group). Epoch e of the train order
shuffles each group's records with `default_rng([seed, e])`, repeats the first
ones of a group to fill its last global batch (mmdet pads the same way, with
random repeats), and shuffles the order of the global batches. The eval order
takes each group's records in index order and pads its last batch with "no
record" (-1), so every real record is read exactly once. Both depend only on
(seed, position): a resumed iterator continues with the next batch, and any
number of processes reads the same global batches.
"""
import math

import grain
import jax
import numpy as np
from jax.experimental import multihost_utils

from vision_jax import metrics
from vision_jax.data import coco

NO_RECORD = -1  # Eval padding.


def check_canvases(canvases) -> tuple[tuple[int, int], ...]:
  """Canvases as ((H, W), ...); positive sides, at least two, no repeats."""
  try:
    out = tuple((int(h), int(w)) for h, w in canvases)
  except (TypeError, ValueError):
    raise ValueError(f"canvases must be (height, width) pairs, got {canvases!r}.") from None
  if len(out) < 2 or len(set(out)) < len(out) or min(min(c) for c in out) < 1:
    raise ValueError(f"canvases must be two or more distinct (height, width) pairs of positive "
                     f"sides, got {canvases!r}.")
  return out


def assign_groups(sizes: np.ndarray, canvases) -> np.ndarray:
  """sizes [N, 2] as (h, w) -> int32 [N], the canvas of each image's aspect
  ratio; an unknown size (NaN or <= 0) goes to group 0."""
  sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
  known = np.all(sizes > 0, axis=1)  # False for NaN too.
  aspect = np.log(np.where(known, sizes[:, 1], 1.0) / np.where(known, sizes[:, 0], 1.0))
  targets = np.log([w / h for h, w in check_canvases(canvases)])
  groups = np.argmin(np.abs(aspect[:, None] - targets[None, :]), axis=1).astype(np.int32)
  return np.where(known, groups, 0).astype(np.int32)


def image_sizes(source, what: str, batch: int = 256) -> np.ndarray:
  """float64 [N, 2] (h, w) of every record of a detection source: from the
  source's own table where it has one (a COCO json), else, and for entries the
  table lacks, from each record's image header (TFDS: read once, on process 0,
  shared with the others). Unreadable ones are NaN."""
  own = getattr(source, "image_sizes", None)
  sizes = np.asarray(own(), np.float64) if own else np.full((len(source), 2), np.nan)
  missing = np.flatnonzero(~np.all(sizes > 0, axis=1))
  if len(missing) and jax.process_index() == 0:
    starts = range(0, len(missing), batch)
    for start in metrics.with_progress(starts, len(starts), f"reading image sizes of {what}"):
      for k in missing[start:start + batch]:
        try:
          w, h = coco.image_size(source[int(k)]["image"])
          sizes[k] = h, w
        except Exception:  # pylint: disable=broad-except  # Skipped and counted when loaded.
          pass
  if len(missing) and jax.process_count() > 1:
    sizes = np.asarray(multihost_utils.broadcast_one_to_all(sizes.astype(np.float32)), np.float64)
  return sizes


class GroupedOrder(grain.MapDataset):
  """Position -> (record index, group): whole global batches of one group."""

  def __init__(self, groups: np.ndarray, num_groups: int, global_batch: int, seed: int,
               shuffle: bool):
    super().__init__()
    groups = np.asarray(groups, np.int64)
    self._members = [np.flatnonzero(groups == g) for g in range(num_groups)]
    self._batches = [math.ceil(len(m) / global_batch) for m in self._members]
    self._batch, self._seed, self._shuffle = global_batch, seed, shuffle
    self._epoch_len = sum(self._batches) * global_batch
    self._cached = (None, None)  # (epoch, (records, groups)) of the last epoch read.

  def __len__(self) -> int:
    return self._epoch_len

  def batches_per_group(self) -> list[int]:
    return list(self._batches)

  def epoch(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(records, groups) int64 [epoch length] of epoch `epoch`."""
    if self._cached[0] == epoch:
      return self._cached[1]
    rng = np.random.default_rng([self._seed, epoch]) if self._shuffle else None
    chunks, chunk_groups = [], []
    for g, (members, n) in enumerate(zip(self._members, self._batches)):
      if not n:
        continue
      if rng is not None:
        records = np.resize(rng.permutation(members), n * self._batch)
      else:
        records = np.full(n * self._batch, NO_RECORD, np.int64)
        records[:len(members)] = members
      chunks.append(records.reshape(n, self._batch))
      chunk_groups += [g] * n
    chunks, chunk_groups = np.concatenate(chunks), np.asarray(chunk_groups, np.int64)
    if rng is not None:
      order = rng.permutation(len(chunks))
      chunks, chunk_groups = chunks[order], chunk_groups[order]
    value = (chunks.reshape(-1), np.repeat(chunk_groups, self._batch))
    self._cached = (epoch, value)
    return value

  def __getitem__(self, position):
    if isinstance(position, slice):
      return self.slice(position)
    epoch, offset = divmod(int(position), self._epoch_len)
    records, groups = self.epoch(epoch)
    return int(records[offset]), int(groups[offset])

  def __str__(self) -> str:
    return (f"GroupedOrder(batches per group={self._batches}, global_batch={self._batch}, "
            f"shuffle={self._shuffle})")
