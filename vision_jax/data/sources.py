"""Random-access sources by dataset name: TFDS `data_source` (ArrayRecord)."""
import tensorflow_datasets as tfds

from vision_jax import registry


class DataMissingError(FileNotFoundError):
  """A named dataset is not prepared where it was looked for."""


def _prepare_help(name: str, data_dir: str | None) -> str:
  where = f" --data_dir={data_dir}" if data_dir else ""
  return (f"Prepare it once, on a machine that can download it, with\n"
          f"  tfds build {name}{where} --file_format=array_record\n"
          f"(or download_and_prepare(file_format='array_record') in Python) and point "
          f"config.data.data_dir at that directory. Grain reads the ArrayRecord format only.")


def open_source(name: str, split: str, data_dir: str | None, skip_decoding=()):
  """Returns a random-access source of decoded examples for `name`/`split`.

  Embedded datasets are built in `data_dir` on first use; any other TFDS name
  must already be prepared, or a `DataMissingError` says how to prepare it.
  """
  decoders = {key: tfds.decode.SkipDecoding() for key in skip_decoding}
  if name in registry.EMBEDDED_DATASETS:
    builder = registry.EMBEDDED_DATASETS.get(name)(data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      builder.download_and_prepare()
  else:
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DataMissingError(f"Unknown dataset {name!r}: neither embedded "
                             f"({', '.join(registry.EMBEDDED_DATASETS.names())}) nor in TFDS. {e}") from None
    if not builder.is_prepared():
      raise DataMissingError(f"TFDS dataset {name!r} is not prepared in {builder.data_dir}.\n"
                             + _prepare_help(name, data_dir))
  if split.split("[")[0] not in builder.info.splits:
    raise DataMissingError(f"Dataset {name!r} has no split {split!r}; it has "
                           f"{', '.join(builder.info.splits)}.")
  try:
    decoders = {k: v for k, v in decoders.items() if k in builder.info.features}
    return builder.as_data_source(split, decoders=decoders or None)
  except NotImplementedError as e:
    raise DataMissingError(f"TFDS dataset {name!r} is prepared but not as ArrayRecord. "
                           + _prepare_help(name, data_dir)) from e
