"""Aspect-ratio groups: one canvas per global batch, deterministic, resumable,
the same batches on any number of processes."""
import io

import numpy as np
import pytest
from PIL import Image

from vision_jax import config as config_lib
from vision_jax.data import grouping, pipeline, sources

CANVASES = ((8, 12), (12, 8))  # Landscape, portrait.
PP = "decode|pad_to_canvas|keep('image', 'id')"


def _sizes(n: int) -> np.ndarray:
  """(h, w) of record i: landscape, portrait or square, in no pattern."""
  rng = np.random.default_rng(3)
  h = rng.integers(4, 9, n)
  w = rng.integers(4, 9, n)
  return np.stack([h, w], 1)


class SizedSource:
  """Grey PNGs of record-dependent sizes with ids; `table` exposes the sizes
  the way a COCO json does (else the pipeline reads each image's header)."""

  def __init__(self, n: int, table: bool = True):
    self.sizes = _sizes(n)
    if table:
      self.image_sizes = lambda: self.sizes.astype(np.float64)

  def __len__(self):
    return len(self.sizes)

  def __getitem__(self, i):
    buf = io.BytesIO()
    h, w = self.sizes[i]
    Image.fromarray(np.full((h, w), i % 251 + 1, np.uint8)).save(buf, format="PNG")
    return {"image": buf.getvalue(), "id": i}


@pytest.fixture
def sized_source(monkeypatch):
  def use(n, table=True):
    monkeypatch.setattr(sources, "open_source", lambda *a, **k: SizedSource(n, table))
  return use


def _spec(batch, split="train", shard=None, workers=0):
  return pipeline.DataSpec(name="fake", split=split, pp=PP, global_batch=batch, seed=5,
                           shard=shard, num_workers=workers, canvases=CANVASES)


def _take(data, n):
  it = iter(data)
  return [next(it) for _ in range(n)]


def test_two_canvases_are_mmdets_landscape_flag():
  sizes = np.stack(np.meshgrid(np.arange(1, 40), np.arange(1, 40)), -1).reshape(-1, 2)
  groups = grouping.assign_groups(sizes, ((800, 1344), (1344, 800)))
  np.testing.assert_array_equal(groups, (sizes[:, 1] < sizes[:, 0]).astype(int))  # Squares: 0.
  # Three canvases: the nearest aspect ratio (log scale); unknown sizes go to group 0.
  three = ((800, 1344), (1088, 1088), (1344, 800))
  got = grouping.assign_groups([[100, 300], [100, 110], [300, 100], [np.nan, 5]], three)
  np.testing.assert_array_equal(got, [0, 1, 2, 0])


@pytest.mark.parametrize("bad", [((8, 12),), ((8, 12), (8, 12)), ((0, 4), (4, 4)), (8, 12)])
def test_bad_canvases_are_refused(bad):
  with pytest.raises(ValueError, match="canvases must be"):
    grouping.check_canvases(bad)


def test_each_global_batch_is_one_group_and_an_epoch_covers_every_record():
  groups = np.array([0] * 13 + [1] * 6 + [0] * 4)  # 17 landscape, 6 portrait.
  order = grouping.GroupedOrder(groups, 2, 4, seed=1, shuffle=True)
  assert len(order) == (5 + 2) * 4 and order.batches_per_group() == [5, 2]
  epochs = []
  for epoch in range(3):
    items = [order[epoch * len(order) + k] for k in range(len(order))]
    records = np.array([r for r, _ in items])
    batch_groups = np.array([g for _, g in items]).reshape(-1, 4)
    assert (batch_groups == batch_groups[:, :1]).all()
    np.testing.assert_array_equal(groups[records], [g for _, g in items])
    assert set(records.tolist()) == set(range(len(groups)))  # Every record, the fill repeats
    assert len(records) - len(set(records.tolist())) == (20 - 17) + (8 - 6)  # a few.
    epochs.append(records)
  assert not np.array_equal(epochs[0], epochs[1])  # Reshuffled per epoch,
  again = grouping.GroupedOrder(groups, 2, 4, seed=1, shuffle=True)
  assert [again[k] for k in range(40, 60)] == [order[k] for k in range(40, 60)]  # deterministically.
  assert [grouping.GroupedOrder(groups, 2, 4, seed=2, shuffle=True)[k] for k in range(28)] != \
      [order[k] for k in range(28)]


def test_eval_order_reads_each_record_once_padding_each_group():
  groups = np.array([1, 0, 0, 1, 0])
  order = grouping.GroupedOrder(groups, 2, 2, seed=0, shuffle=False)
  assert [order[k] for k in range(len(order))] == [
      (1, 0), (2, 0), (4, 0), (-1, 0), (0, 1), (3, 1)]


def test_process_shards_rebuild_the_single_process_batches(sized_source):
  sized_source(30)
  whole = _take(pipeline.TrainData(_spec(4)), 12)  # Crosses the epoch (8 + 3 batches).
  halves = [_take(pipeline.TrainData(_spec(4, shard=(p, 2))), 12) for p in range(2)]
  sizes = _sizes(30)
  shapes = set()
  for b in range(12):
    np.testing.assert_array_equal(np.concatenate([h[b]["id"] for h in halves]), whole[b]["id"])
    np.testing.assert_array_equal(np.concatenate([h[b]["image"] for h in halves]),
                                  whole[b]["image"])
    image = whole[b]["image"]
    shapes.add(image.shape)
    for row, record in enumerate(whole[b]["id"]):  # Each image at the top left of its canvas.
      h, w = sizes[record]
      assert image.shape[1:3] == CANVASES[int(w < h)]
      assert (image[row, :h, :w] == record % 251 + 1).all() and image[row].sum() == (
          (record % 251 + 1) * h * w)
  assert shapes == {(4, 8, 12, 1), (4, 12, 8, 1)}


@pytest.mark.parametrize("workers", [0, 2])
def test_grouped_iterator_resumes_at_the_next_batch(sized_source, workers):
  sized_source(30)
  data = pipeline.TrainData(_spec(4, workers=workers))
  _take(data, 9)
  state = data.get_state()
  expected = _take(data, 4)
  data.close()
  resumed = pipeline.TrainData(_spec(4, workers=workers))
  resumed.set_state(state)
  got = _take(resumed, 4)
  resumed.close()
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(a["id"], b["id"])
    np.testing.assert_array_equal(a["image"], b["image"])


def test_sizes_from_image_headers_match_a_size_table(sized_source):
  sized_source(30, table=False)
  from_headers = grouping.image_sizes(sources.open_source("fake", "train", None), "fake")
  np.testing.assert_array_equal(from_headers, _sizes(30))


def test_grouped_eval_reads_every_record_once_on_its_canvas(sized_source):
  sized_source(23)
  seen = []
  for p in range(2):
    n, batches = pipeline.eval_batches(_spec(4, split="test", shard=(p, 2)))
    assert n == 23
    for batch in batches:
      real = batch["mask"] > 0
      np.testing.assert_array_equal(batch["record"][real], batch["id"][real])
      assert (batch["record"][~real] == -1).all()
      seen.extend(batch["id"][real].tolist())
  assert sorted(seen) == list(range(23))


def test_canvases_and_pad_to_canvas_come_together():
  c = config_lib.load("configs/pvt_coco.py:groups=single")
  c.data.canvases = CANVASES
  with pytest.raises(config_lib.ConfigError, match="'data.pp_train' does not pad them with pad_to_canvas"):
    config_lib.validate(c)
  c.data.canvases = ()
  c.data.pp_eval = c.data.pp_eval.replace("pad_to(192, 192)", "pad_to_canvas")
  with pytest.raises(config_lib.ConfigError, match="'data.pp_eval' pads with pad_to_canvas, which needs"):
    config_lib.validate(c)
  c.data.canvases = ((8, 12),)
  with pytest.raises(config_lib.ConfigError, match="'data.canvases': canvases must be two or more"):
    config_lib.validate(c)
