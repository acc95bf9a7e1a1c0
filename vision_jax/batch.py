"""The keys of a batch, defined once: pp ops write them, pipelines add the
flags, tasks and evaluators read them. A batch is a dict of arrays with a
leading (global) batch dimension."""

IMAGE = "image"  # float32 [B, H, W, C] (normalised) or uint8 before `normalize`.
LABELS = "labels"  # Classification: one-hot float32 [B, classes].
BOXES = "boxes"  # Detection: xyxy float32 [B, max_boxes, 4] in the resized frame, padded.
CLASSES = "classes"  # Detection: int32 [B, max_boxes], contiguous class ids, -1 = padding.
IMAGE_ID = "image/id"  # int [B]: the dataset's id of each image (COCO image_id).
IMAGE_SCALE = "image/scale"  # float32 [B, 2]: (new_h / orig_h, new_w / orig_w).
IMAGE_SIZE = "image/size"  # int32 [B, 2]: (h, w) of the resized image before padding.
SEGMENTATION = "segmentation"  # Dense labels: uint8 [B, H, W] class per pixel, 255 = ignore.
ORIGINAL_SIZE = "image/original_size"  # int32 [B, 2]: (h, w) of the image before resizing.
LANE_EXIST = "lanes/exist"  # Lane detection: float32 [B, lanes], 1 where lane k is annotated.
LANE_POINTS = "lanes/points"  # float32 [B, lanes, points, 2] (x, y) in original pixels, NaN = none.
MASK = "mask"  # float32 [B]: 1 for a real example, 0 for padding of the last batch.
SKIPPED = "skipped"  # int32 [B]: 1 where the record was malformed and replaced by padding.
RECORD = "record"  # Eval: int32 [B], each example's record index in its split, -1 = padding.
# Aspect-ratio groups: int32 [2], the (height, width) canvas the pipeline gives a
# record before preprocessing (`pad_to_canvas` reads it; `keep` drops it).
CANVAS = "canvas"
# Per-example int32 counters a pp op may emit (e.g. "count/dropped_boxes"); the
# trainer sums them over the global batch and logs them as data/<name>.
COUNT_PREFIX = "count/"
