"""Mesh, partition rules and global batches: one code path for 1 to N devices.

The mesh has named axes (`data`, `fsdp`, `model` from the config); every leaf
of the train state (parameters and optimizer moments alike) gets a
PartitionSpec from the first regex rule matching its '/'-joined path; batches
are split over `data` x `fsdp`. Multi-host runs call `initialize_distributed`
first.
"""
import re
from typing import Any, Sequence

import jax
import numpy as np
from absl import logging
from jax.experimental import mesh_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from vision_jax.errors import ConfigError

# Mesh axes that split the batch, in this order, where the mesh has them.
BATCH_AXES = ("data", "fsdp")


def initialize_distributed(enabled: bool, coordinator_address: str | None,
                           num_processes: int | None, process_id: int | None,
                           local_device_ids: str | None = None) -> None:
  """`jax.distributed.initialize` when `enabled` or a coordinator is given.

  With `enabled` and no addresses JAX detects the cluster itself (TPU pods,
  SLURM, Open MPI); a no-op for single-process runs. `local_device_ids`:
  comma-separated ids of the devices this process drives (None: JAX's choice).
  """
  if jax.distributed.is_initialized():
    return
  if not enabled and coordinator_address is None:
    return
  # Cross-process collectives for CPU devices (tests, CPU clusters); other
  # backends bring their own.
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  ids = [int(i) for i in local_device_ids.split(",")] if local_device_ids else None
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id,
                             local_device_ids=ids)


def make_mesh(axes: dict[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A mesh with one axis per entry of `axes`; one size may be -1 (the rest).

  Sizes that multiply to fewer devices than there are use the first ones.
  """
  devices = list(devices if devices is not None else jax.devices())
  sizes = dict(axes)
  unknown = [name for name, size in sizes.items() if size == -1]
  if len(unknown) > 1:
    raise ValueError(f"Only one mesh axis may be -1, got {unknown}.")
  known = int(np.prod([s for s in sizes.values() if s != -1]))
  if unknown:
    if len(devices) % known:
      raise ValueError(f"{len(devices)} devices cannot be split by mesh axes {axes}.")
    sizes[unknown[0]] = len(devices) // known
  needed = int(np.prod(list(sizes.values())))
  if needed > len(devices):
    raise ValueError(f"Mesh axes {sizes} need {needed} devices; {len(devices)} are available.")
  if needed < len(devices):
    logging.warning("Mesh axes %s use %d of %d devices.", sizes, needed, len(devices))
    devices = devices[:needed]
  shape = tuple(sizes.values())
  try:
    grid = mesh_utils.create_device_mesh(shape, devices)
  except (ValueError, NotImplementedError, AssertionError):
    grid = np.asarray(devices).reshape(shape)
  return Mesh(grid, tuple(sizes))


def path_name(path) -> str:
  """'/'-joined names of a pytree key path, e.g. 'params/stage1/conv/kernel'."""
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
    else:
      parts.append(str(key))
  return "/".join(parts)


def is_ellipsis(entry) -> bool:
  """A spec's leading `...` (Python's Ellipsis, or the string "..." as JSON and
  command lines write it): align the rest with the trailing dimensions."""
  return entry is Ellipsis or (isinstance(entry, str) and entry == "...")


def _fit(spec: tuple, shape: tuple[int, ...], mesh: Mesh, name: str, pattern: str) -> P:
  """`spec` laid over the array's dimensions, dropping axes that do not divide them.

  A plain spec names the leading dimensions (missing ones are replicated); a
  spec that starts with `...` names the trailing ones. A spec naming more
  dimensions than the leaf has is a ConfigError naming the leaf.
  """
  spec = tuple(spec)
  trailing = bool(spec) and is_ellipsis(spec[0])
  entries = spec[1:] if trailing else spec
  if len(entries) > len(shape):
    hint = "" if trailing else (f"; to shard its last dimensions write "
                                f"(..., {', '.join(map(repr, entries[-len(shape):]))})"
                                if shape else "")
    raise ConfigError(f"Partition rule ({pattern!r}, {spec!r}) names {len(entries)} dimensions "
                      f"but {name} has shape {shape}{hint}.")
  entries = (None,) * (len(shape) - len(entries)) + entries if trailing else entries
  fitted = []
  for dim, axis in zip(shape, entries):
    axes = axis if isinstance(axis, tuple) else (axis,) if axis else ()
    size = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
    if size > 1 and dim % size:
      logging.info("Replicating dim of size %d of %s: not divisible by mesh axes %s.", dim, name, axes)
      axis = None
    fitted.append(axis)
  return P(*fitted)


def largest_dim_spec(axis: str, shape: tuple[int, ...], mesh: Mesh) -> tuple:
  """Spec sharding the largest dimension of `shape` that `axis` divides (the
  last such on ties), or () if none does; as big_vision's `fsdp` strategy."""
  size = mesh.shape[axis]
  candidates = [i for i, dim in enumerate(shape) if dim % size == 0 and dim >= size]
  if size == 1 or not candidates:
    return ()
  best = max(candidates, key=lambda i: (shape[i], i))
  return tuple(axis if i == best else None for i in range(len(shape)))


def tree_shardings(tree: Any, mesh: Mesh, rules: Sequence[tuple[str, tuple | str]]) -> Any:
  """NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs) by regex rules.

  A rule's spec is a tuple of PartitionSpec entries for the leading dimensions,
  `...` followed by entries for the trailing ones, or the name of one mesh
  axis: shard the leaf's largest dimension that axis divides. First match wins.
  """
  compiled = [(re.compile(pattern), spec if isinstance(spec, str) and not is_ellipsis(spec)
               else tuple(spec)) for pattern, spec in rules]

  def one(path, leaf):
    name = path_name(path)
    shape = tuple(getattr(leaf, "shape", ()))
    for pattern, spec in compiled:
      if pattern.fullmatch(name):
        if isinstance(spec, str):
          spec = largest_dim_spec(spec, shape, mesh)
        return NamedSharding(mesh, _fit(spec, shape, mesh, name, pattern.pattern))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(one, tree)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
  return tuple(a for a in BATCH_AXES if a in mesh.shape)


def batch_shards(mesh: Mesh) -> int:
  """Number of row blocks a batch is split into."""
  return int(np.prod([mesh.shape[a] for a in batch_axes(mesh)]))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(batch_axes(mesh)))


def global_batch(local_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """This process's rows -> global arrays split over the `data` x `fsdp` axes."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      local_batch)
