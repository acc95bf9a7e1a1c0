"""COCO-format sources: folder records, ground truth, TFDS coco/2017, full pp chain."""
import io
import json
import pickle

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from vision_jax.data import coco, ground_truth, grouping, pipeline, sources

CATEGORIES = [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
IMAGES = [  # id, file, (height, width); 9 is corrupt, 15 is missing, 13 has no annotation.
    (42, "a.png", (30, 40)), (7, "b.png", (20, 20)), (9, "bad.png", (10, 10)),
    (13, "empty.png", (12, 16)), (15, "missing.png", (10, 10))]
ANNOTATIONS = [  # id, image_id, category_id, bbox xywh, iscrowd
    (1, 42, 18, [4, 3, 10, 6], 0),
    (2, 42, 90, [0, 0, 40, 30], 1),     # Crowd.
    (3, 42, 3, [30, 20, -5, 4], 0),     # Negative width.
    (10, 42, 3, [20, 10, 8, 8], 0),
    (4, 7, 3, [15, 15, 10, 10], 0),     # Partly outside: clipped to [15, 15, 20, 20].
    (5, 7, 55, [1, 1, 5, 5], 0),        # Unknown category.
    (6, 7, 3, "oops", 0),               # Not a box.
    (11, 7, 18, [25, 25, 5, 5], 0),     # Entirely outside.
    (7, 9, 3, [1, 1, 5, 5], 0),
    (12, 15, 3, [1, 1, 5, 5], 0),
    (8, 999, 3, [1, 1, 5, 5], 0),       # Unknown image.
]
EVAL_PP = ("decode(channels=3)|coco_objects|resize_keep_ratio(64, 96)|normalize(0.5, 0.5)"
           "|pad_to(96, 96)|pad_boxes(1)")
FEATURES = {"image", "boxes", "classes", "image/id", "image/scale", "image/size",
            "count/dropped_boxes", "count/truncated_boxes", "mask", "skipped"}


def _png(h, w, value=0) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


@pytest.fixture
def coco_dir(tmp_path):
  (tmp_path / "annotations").mkdir()
  (tmp_path / "val2017").mkdir()
  for image_id, name, (h, w) in IMAGES:
    if name == "bad.png":
      (tmp_path / "val2017" / name).write_bytes(b"\x89PNG but not really")
    elif name != "missing.png":
      (tmp_path / "val2017" / name).write_bytes(_png(h, w, image_id))
  instances = {
      "images": [{"id": i, "file_name": n, "height": h, "width": w} for i, n, (h, w) in IMAGES],
      "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": b, "iscrowd": crowd,
                       "area": 50.5 + a} for a, i, c, b, crowd in ANNOTATIONS],
      "categories": CATEGORIES}
  (tmp_path / "annotations" / "instances_val2017.json").write_text(json.dumps(instances))
  return tmp_path


def test_folder_records_have_the_tfds_layout(coco_dir):
  source = sources.open_source("coco_folder", "val2017", str(coco_dir), ("image",))
  assert len(source) == 5
  ids = [int(source.image_ids[i]) for i in range(5)]
  assert ids == [7, 9, 13, 15, 42]
  assert source.category_ids == [3, 18, 90] and source.class_names == ["car", "dog", "toothbrush"]
  record = source[4]
  assert record["image"] == (coco_dir / "val2017" / "a.png").read_bytes()
  assert int(record["image/id"]) == 42 and record["image/filename"] == b"a.png"
  objects = record["objects"]
  assert objects["bbox"].dtype == np.float32 and objects["bbox"].shape == (4, 4)
  np.testing.assert_allclose(objects["bbox"][0], [3 / 30, 4 / 40, 9 / 30, 14 / 40], rtol=1e-6)
  np.testing.assert_allclose(objects["bbox"][2], [20 / 30, 30 / 40, 24 / 30, 25 / 40], rtol=1e-6)
  assert objects["label"].tolist() == [1, 2, 0, 0]  # Contiguous in sorted id order.
  assert objects["is_crowd"].tolist() == [False, True, False, False]
  assert objects["id"].tolist() == [1, 2, 3, 10]
  np.testing.assert_allclose(objects["area"], [51.5, 52.5, 53.5, 60.5])
  other = source[0]["objects"]
  assert other["label"].tolist() == [0, -1, 0, 1] and np.isnan(other["bbox"][1:3]).sum() == 4
  assert source[2]["objects"]["bbox"].shape == (0, 4)  # Kept though it has no annotation.
  assert source.report == {"annotations_of_unknown_images": 1, "unknown_category": 1, "bad_bbox": 1}


def test_unreadable_images_raise_at_access_only(coco_dir):
  source = coco.CocoFolder(str(coco_dir), "val2017", decode_image=True)
  with pytest.raises(ValueError, match="Unreadable image .*bad.png"):
    source[1]
  with pytest.raises(FileNotFoundError):
    source[3]
  image = source[4]["image"]
  assert image.shape == (30, 40, 3) and image.dtype == np.uint8 and (image == 42).all()
  copy = pickle.loads(pickle.dumps(source))
  np.testing.assert_array_equal(copy[0]["objects"]["bbox"], source[0]["objects"]["bbox"])


def test_split_slices_and_dropping_empty_images(coco_dir):
  assert coco.CocoFolder(str(coco_dir), "val2017[1:3]").image_ids.tolist() == [9, 13]
  assert coco.CocoFolder(str(coco_dir), "val2017[:40%]").image_ids.tolist() == [7, 9]
  annotated = sources.open_source("coco_folder", "val2017", str(coco_dir), drop_empty=True)
  assert annotated.image_ids.tolist() == [7, 9, 15, 42]


def test_missing_folder_split_names_the_expected_path(coco_dir):
  with pytest.raises(sources.DataMissingError, match="annotations/instances_train2017.json"):
    sources.open_source("coco_folder", "train2017", str(coco_dir))
  with pytest.raises(sources.DataMissingError, match="set config.data.data_dir"):
    sources.open_source("coco_folder", "val2017", None)


def test_folder_ground_truth_is_the_json(coco_dir):
  gt, ids, names = ground_truth.load("coco_folder", "val2017", str(coco_dir))
  assert gt == json.loads((coco_dir / "annotations" / "instances_val2017.json").read_text())
  assert ids == [3, 18, 90] and names == ["car", "dog", "toothbrush"]
  part, _, _ = ground_truth.load("coco_folder", "val2017[3:]", str(coco_dir))
  assert [im["id"] for im in part["images"]] == [15, 42]
  assert sorted(a["id"] for a in part["annotations"]) == [1, 2, 3, 10, 12]


def test_eval_chain_gives_fixed_features_and_counts(coco_dir):
  spec = pipeline.DataSpec(name="coco_folder", split="val2017", pp=EVAL_PP, global_batch=4,
                           data_dir=str(coco_dir))
  n, batches = pipeline.eval_batches(spec)
  batches = list(batches)
  assert n == 5 and len(batches) == 2
  for batch in batches:
    assert set(batch) == FEATURES | {"record"}  # Eval examples carry their record index.
    assert batch["image"].shape == (4, 96, 96, 3) and batch["image"].dtype == np.float32
    assert batch["boxes"].shape == (4, 1, 4) and batch["classes"].dtype == np.int32
    assert batch["image/id"].dtype == np.int32 and batch["image/scale"].shape == (4, 2)
  rows = {int(i): (b, k) for b in batches for k, i in enumerate(b["image/id"]) if b["mask"][k]}
  assert sorted(rows) == [7, 13, 42]
  assert sum(int(b["skipped"].sum()) for b in batches) == 2  # bad.png and missing.png.
  assert [b["record"].tolist() for b in batches] == [[0, 1, 2, 3], [4, -1, -1, -1]]
  assert sum(int(b["count/dropped_boxes"].sum()) for b in batches) == 4
  assert sum(int(b["count/truncated_boxes"].sum()) for b in batches) == 1
  batch, k = rows[42]  # 30x40 -> 64x85 (scale min(96/40, 64/30)).
  np.testing.assert_array_equal(batch["image/size"][k], [64, 85])
  np.testing.assert_allclose(batch["image/scale"][k], [64 / 30, 85 / 40])
  np.testing.assert_allclose(batch["boxes"][k, 0], [4 * 85 / 40, 3 * 64 / 30, 14 * 85 / 40,
                                                    9 * 64 / 30], rtol=1e-6)
  assert batch["classes"][k, 0] == 1
  batch, k = rows[7]  # 20x20 -> 64x64; the clipped box [15, 15, 20, 20] x 3.2.
  np.testing.assert_allclose(batch["boxes"][k, 0], [48, 48, 64, 64])
  batch, k = rows[13]
  assert batch["classes"][k].tolist() == [-1] and not batch["boxes"][k].any()
  assert (batch["image"][k, 64:] == 0).all() and (batch["image"][k, :, 86:] == 0).all()


def test_train_chain_flips_boxes_with_images(coco_dir):
  pp = EVAL_PP.replace("|normalize", "|flip_lr_boxes|normalize")
  spec = pipeline.DataSpec(name="coco_folder", split="val2017", pp=pp, global_batch=4,
                           data_dir=str(coco_dir), seed=3)
  data = pipeline.TrainData(spec)
  seen = set()
  for _, batch in zip(range(6), data):
    assert set(batch) == FEATURES and batch["image"].shape == (4, 96, 96, 3)
    for k in np.flatnonzero((batch["image/id"] == 42) & (batch["mask"] > 0)):
      x1, _, x2, _ = batch["boxes"][k, 0]
      seen.add((round(float(x1), 3), round(float(x2), 3)))
  data.close()
  assert seen == {(8.5, 29.75), (85 - 29.75, 85 - 8.5)}  # Both sides of the 85 px wide image.


# A stand-in for TFDS's `coco/2017` builder with its exact features: the real
# builder's code needs TensorFlow, while reading prepared files does not.
class Coco(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  VERSION = tfds.core.Version("1.1.0")
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="2017")]
  RECORDS = [  # image id, (h, w), [(annotation id, label, (ymin, xmin, ymax, xmax), crowd, area)]
      (139, (30, 40), [(5, 0, (0.1, 0.25, 0.5, 0.75), False, 120), (6, 79, (0.0, 0.0, 1.0, 1.0), True, 900)]),
      (285, (24, 24), [(7, 11, (0.5, 0.5, 0.75, 1.0), False, 30)]),
      (632, (16, 20), [])]

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(encoding_format="jpeg"),
        "image/filename": tfds.features.Text(), "image/id": np.int64,
        "objects": tfds.features.Sequence({
            "id": np.int64, "area": np.int64, "bbox": tfds.features.BBoxFeature(),
            "label": tfds.features.ClassLabel(num_classes=80), "is_crowd": np.bool_})}))

  def _split_generators(self, dl_manager):
    return {"validation": self._generate_examples()}

  def _generate_examples(self):
    for image_id, (h, w), objects in self.RECORDS:
      buf = io.BytesIO()
      Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(buf, format="JPEG")
      yield image_id, {
          "image": buf.getvalue(), "image/filename": f"{image_id:012d}.jpg", "image/id": image_id,
          "objects": [{"id": a, "label": c, "bbox": tfds.features.BBox(*b), "is_crowd": crowd,
                       "area": area} for a, c, b, crowd, area in objects]}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  Coco(data_dir=data_dir, config="2017").download_and_prepare(file_format="array_record")
  return data_dir


def _check_coco_ground_truth(gt, ids, names):
  assert ids == list(coco.COCO_CATEGORY_IDS) and len(ids) == 80 and ids[-1] == 90
  assert names[11] == "stop sign" and names[79] == "toothbrush"
  images = {im["id"]: im for im in gt["images"]}
  assert {k: (v["width"], v["height"]) for k, v in images.items()} == {
      139: (40, 30), 285: (24, 24), 632: (20, 16)}
  anns = {a["id"]: a for a in gt["annotations"]}
  assert sorted(anns) == [5, 6, 7]
  np.testing.assert_allclose(anns[5]["bbox"], [10, 3, 20, 12], rtol=1e-6)
  np.testing.assert_allclose(anns[7]["bbox"], [12, 12, 12, 6], rtol=1e-6)
  assert (anns[5]["category_id"], anns[6]["category_id"], anns[7]["category_id"]) == (1, 90, 13)
  assert (anns[6]["iscrowd"], anns[5]["iscrowd"], anns[7]["area"]) == (1, 0, 30)
  assert gt["categories"][11] == {"id": 13, "name": "stop sign"}


def test_tfds_coco_ground_truth_from_prepared_files(tfds_dir):
  ground_truth._from_tfds.cache_clear()
  _check_coco_ground_truth(*ground_truth.load("coco/2017", "validation", tfds_dir))
  spec = pipeline.DataSpec(name="coco/2017", split="validation", pp=EVAL_PP, global_batch=4,
                           data_dir=tfds_dir)
  n, batches = pipeline.eval_batches(spec)
  batch = next(batches)
  assert n == 3 and set(batch) == FEATURES | {"record"}
  assert sorted(batch["image/id"][:3]) == [139, 285, 632]


def test_tfds_coco_in_aspect_ratio_groups_from_image_headers(tfds_dir):
  source = sources.open_source("coco/2017", "validation", tfds_dir, ("image",))
  sizes = grouping.image_sizes(source, "coco/2017")  # TFDS has no size table: JPEG headers.
  canvases = ((64, 96), (96, 64))
  spec = pipeline.DataSpec(name="coco/2017", split="validation", global_batch=1,
                           pp=EVAL_PP.replace("pad_to(96, 96)", "pad_to_canvas"),
                           data_dir=tfds_dir, canvases=canvases)
  n, batches = pipeline.eval_batches(spec)
  seen = {}
  for batch in batches:
    record = int(batch["record"][0])
    h, w = sizes[record]
    assert batch["image"].shape[1:3] == canvases[int(w < h)] and batch["skipped"][0] == 0
    seen[int(batch["image/id"][0])] = record
  assert n == 3 and sorted(seen) == [139, 285, 632] and sorted(seen.values()) == [0, 1, 2]


def test_tfds_coco_ground_truth_under_mock_data(tfds_dir):
  records = []
  for image_id, (h, w), objects in Coco.RECORDS:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="JPEG")
    records.append({"image": buf.getvalue(), "image/id": image_id, "image/filename": b"x.jpg",
                    "objects": {"id": [o[0] for o in objects], "label": [o[1] for o in objects],
                                "bbox": [np.float32(o[2]) for o in objects],
                                "is_crowd": [o[3] for o in objects], "area": [o[4] for o in objects]}})

  class FakeSource(list):
    dataset_info = None

  def as_data_source(builder, split, decoders=None, **kwargs):
    assert split == "validation" and "image" in decoders
    source = FakeSource(records)
    source.dataset_info = builder.info
    return source

  ground_truth._from_tfds.cache_clear()
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_FILES, data_dir=tfds_dir,
                              as_data_source_fn=as_data_source):
    _check_coco_ground_truth(*ground_truth.load("coco/2017", "validation", "/elsewhere"))
  ground_truth._from_tfds.cache_clear()


def test_tfds_coco_without_files_says_how_to_prepare(tmp_path):
  with pytest.raises(sources.DataMissingError, match="tfds build coco/2017"):
    sources.open_source("coco/2017", "validation", str(tmp_path))


def test_drop_empty_leaves_unannotated_train_images_out_and_logs_it(tfds_dir, coco_dir, caplog):
  caplog.set_level("INFO")
  data = pipeline.TrainData(pipeline.DataSpec(
      name="coco/2017", split="validation", pp=EVAL_PP, global_batch=1, data_dir=tfds_dir,
      drop_empty=True))
  try:
    assert (data.num_examples, data.empty_dropped) == (2, 1)
    it = iter(data)
    assert sorted(int(next(it)["image/id"][0]) for _ in range(4)) == [139, 139, 285, 285]
  finally:
    data.close()
  assert "training on the 2 images with annotations; 1 without any left out" in caplog.text
  folder = pipeline.TrainData(pipeline.DataSpec(
      name="coco_folder", split="val2017", pp=EVAL_PP, global_batch=1, data_dir=str(coco_dir),
      drop_empty=True))
  folder.close()
  assert (folder.num_examples, folder.empty_dropped) == (4, 1)  # Image 13 has no annotation.
  kept = pipeline.TrainData(pipeline.DataSpec(
      name="coco/2017", split="validation", pp=EVAL_PP, global_batch=1, data_dir=tfds_dir))
  kept.close()
  assert (kept.num_examples, kept.empty_dropped) == (3, 0)
