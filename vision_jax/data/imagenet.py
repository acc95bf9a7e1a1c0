"""ImageNet-1k input settings shared by the ImageNet experiment configs.

TFDS `imagenet2012` (ArrayRecord), the standard preprocessing: an Inception
crop to 224 and a flip for training; resize of the short side to 256 and a
central 224 crop for evaluation; torchvision's mean/std normalisation.
"""
MEAN_RGB = (0.485, 0.456, 0.406)
STD_RGB = (0.229, 0.224, 0.225)
NORMALIZE = f"normalize({MEAN_RGB}, {STD_RGB})"
NUM_CLASSES = 1000


def set_data(c, batch: int, *, resize_method: str | None = None, label_smoothing: float = 0.0,
             num_workers: int = 8) -> None:
  """Sets c.data for ImageNet-1k with global batch `batch`; `resize_method`
  (e.g. 'bicubic') for both crops, `label_smoothing` for training labels."""
  method = f", method={resize_method!r}" if resize_method else ""
  smoothing = f", smoothing={label_smoothing}" if label_smoothing else ""
  keep = "keep('image', 'labels')"
  c.data.name = "imagenet2012"
  c.data.train_split = "train"
  c.data.eval_split = "validation"
  c.data.batch_size = batch
  c.data.eval_batch_size = 1000
  c.data.num_workers = num_workers
  c.data.pp_train = (f"decode(channels=3)|random_resized_crop(224{method})|flip_lr|{NORMALIZE}|"
                     f"onehot({NUM_CLASSES}{smoothing})|{keep}")
  c.data.pp_eval = (f"decode(channels=3)|resize_small(256{method})|central_crop(224)|"
                    f"{NORMALIZE}|onehot({NUM_CLASSES})|{keep}")
