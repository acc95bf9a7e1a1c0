"""Random-access sources by dataset name: TFDS `data_source` (ArrayRecord)."""
import jax
import tensorflow_datasets as tfds
from jax.experimental import multihost_utils

from vision_jax import registry


class DataMissingError(FileNotFoundError):
  """A named dataset is not prepared where it was looked for."""


def _prepare_help(name: str, data_dir: str | None) -> str:
  where = f" --data_dir={data_dir}" if data_dir else ""
  return (f"Prepare it once, on a machine that can download it, with\n"
          f"  tfds build {name}{where} --file_format=array_record\n"
          f"(or download_and_prepare(file_format='array_record') in Python) and point "
          f"config.data.data_dir at that directory. Grain reads the ArrayRecord format only.")


def _prepare_once(builder) -> None:
  """Builds an embedded dataset: process 0 first (data_dir may be shared), then
  any host whose own data_dir still lacks it."""
  if builder.is_prepared():
    return
  if jax.process_index() == 0:
    builder.download_and_prepare()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"prepared {builder.name}")
    if not builder.is_prepared():
      builder.download_and_prepare()


def open_source(name: str, split: str, data_dir: str | None, skip_decoding=()):
  """Returns a random-access source of decoded examples for `name`/`split`.

  Embedded datasets are built in `data_dir` on first use; any other TFDS name
  must already be prepared, or a `DataMissingError` says how to prepare it.
  """
  decoders = {key: tfds.decode.SkipDecoding() for key in skip_decoding}
  if name in registry.EMBEDDED_DATASETS:
    builder = registry.EMBEDDED_DATASETS.get(name)(data_dir=data_dir, file_format="array_record")
    _prepare_once(builder)
  else:
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise DataMissingError(f"Unknown dataset {name!r}: neither embedded "
                             f"({', '.join(registry.EMBEDDED_DATASETS.names())}) nor in TFDS. {e}") from None
  if builder.info.splits and split.split("[")[0] not in builder.info.splits:
    raise DataMissingError(f"Dataset {name!r} has no split {split!r}; it has "
                           f"{', '.join(builder.info.splits)}.")
  decoders = {k: v for k, v in decoders.items() if k in builder.info.features}
  try:
    return builder.as_data_source(split, decoders=decoders or None)
  except (NotImplementedError, FileNotFoundError, AssertionError) as e:
    state = ("is prepared but not as ArrayRecord" if builder.is_prepared()
             else "is not prepared")
    raise DataMissingError(f"TFDS dataset {name!r} {state} in {builder.data_dir}.\n"
                           + _prepare_help(name, data_dir)) from e
