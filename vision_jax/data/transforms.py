"""Preprocessing ops on single examples (numpy), chained by a pp string.

A pp string is `op|op(arg, key=value)|...`, as in big_vision. Each op here is a
factory: called with the string's arguments it returns `fn(example, rng)`,
where `rng` is the per-example `np.random.Generator` Grain derives from the
pipeline seed and the record's position, so augmentation is reproducible.
"""
import ast
import inspect
import io
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from vision_jax import registry
from vision_jax.errors import ConfigError

Example = dict
Op = Callable[[Example, np.random.Generator], Example]


def _size(size) -> tuple[int, int]:
  return (size, size) if isinstance(size, int) else tuple(size)


def decode(key: str = "image", channels: int | None = None) -> Op:
  """Encoded image bytes (PNG/JPEG/...) -> uint8 [H, W, C]."""
  def fn(ex, rng):
    value = ex[key]
    if isinstance(value, (bytes, np.bytes_)):
      with Image.open(io.BytesIO(value)) as img:
        if channels == 3:
          img = img.convert("RGB")
        elif channels == 1:
          img = img.convert("L")
        value = np.asarray(img)
    value = np.asarray(value, np.uint8)
    return {**ex, key: value[..., None] if value.ndim == 2 else value}
  return fn


RESAMPLE = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}


def check_method(method: str) -> None:
  """Fails when a pp string is parsed, not at the first example."""
  if method not in RESAMPLE:
    raise ValueError(f"Unknown resize method {method!r}; choose one of {sorted(RESAMPLE)}.")


def resize_image(image: np.ndarray, h: int, w: int, method: str = "bilinear") -> np.ndarray:
  """Resizes [H, W(, C)] to (h, w) with PIL: uint8 RGB(A) in one call, other
  channel counts and float images plane by plane (modes "L" / "F")."""
  resample = RESAMPLE[method]
  if image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] in (3, 4):
    return np.asarray(Image.fromarray(image).resize((w, h), resample))
  planes = image.reshape(image.shape[:2] + (-1,))
  kind = np.uint8 if image.dtype == np.uint8 else np.float32
  out = [np.asarray(Image.fromarray(planes[..., c].astype(kind)).resize((w, h), resample))
         for c in range(planes.shape[-1])]
  return np.stack(out, -1).astype(image.dtype).reshape((h, w) + image.shape[2:])


def resize(size, key: str = "image", method: str = "bilinear") -> Op:
  """Resizes a uint8 [H, W, C] image to `size` (int or (h, w))."""
  h, w = _size(size)
  check_method(method)
  def fn(ex, rng):
    return {**ex, key: resize_image(ex[key], h, w, method)}
  return fn


def resize_small(size: int, key: str = "image", method: str = "bilinear") -> Op:
  """Resizes so the shorter side is `size`, keeping the aspect ratio."""
  check_method(method)
  def fn(ex, rng):
    img = ex[key]
    h, w = img.shape[:2]
    ratio = size / min(h, w)
    return {**ex, key: resize_image(img, max(1, round(h * ratio)), max(1, round(w * ratio)),
                                    method)}
  return fn


def pad(padding: int, key: str = "image") -> Op:
  """Zero-pads `padding` pixels on each side of height and width."""
  def fn(ex, rng):
    return {**ex, key: np.pad(ex[key], ((padding, padding), (padding, padding), (0, 0)))}
  return fn


def random_crop(size, key: str = "image") -> Op:
  """Crops `size` at a uniformly random position."""
  h, w = _size(size)
  def fn(ex, rng):
    img = ex[key]
    top = rng.integers(0, img.shape[0] - h + 1)
    left = rng.integers(0, img.shape[1] - w + 1)
    return {**ex, key: img[top:top + h, left:left + w]}
  return fn


def crop_window(h: int, w: int, scale, ratio, rng: np.random.Generator
                ) -> tuple[int, int, int, int]:
  """(top, left, height, width) of an Inception-style crop: area fraction
  uniform in `scale`, aspect (w/h) log-uniform in `ratio`; after 10 failed
  tries, the largest centred crop whose aspect lies within `ratio`."""
  log_ratio = np.log(np.asarray(ratio, np.float64))
  for _ in range(10):
    target = h * w * rng.uniform(*scale)
    aspect = np.exp(rng.uniform(*log_ratio))
    cw, ch = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
    if 0 < cw <= w and 0 < ch <= h:
      return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
  if w / h < ratio[0]:
    cw, ch = w, int(round(w / ratio[0]))
  elif w / h > ratio[1]:
    ch, cw = h, int(round(h * ratio[1]))
  else:
    ch, cw = h, w
  return (h - ch) // 2, (w - cw) // 2, ch, cw


def random_resized_crop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), key: str = "image",
                        method: str = "bilinear") -> Op:
  """Inception-style crop (Szegedy et al., CVPR 2015; torchvision's
  RandomResizedCrop): a `crop_window`, resized to `size`."""
  h_out, w_out = _size(size)
  check_method(method)

  def fn(ex, rng):
    img = ex[key]
    top, left, ch, cw = crop_window(img.shape[0], img.shape[1], scale, ratio, rng)
    return {**ex, key: resize_image(img[top:top + ch, left:left + cw], h_out, w_out, method)}
  return fn


def central_crop(size, key: str = "image") -> Op:
  """Crops `size` from the centre."""
  h, w = _size(size)
  def fn(ex, rng):
    img = ex[key]
    top, left = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
    return {**ex, key: img[top:top + h, left:left + w]}
  return fn


def flip_lr(key: str = "image", p: float = 0.5) -> Op:
  """Mirrors left-right with probability `p`."""
  def fn(ex, rng):
    return {**ex, key: ex[key][:, ::-1]} if rng.random() < p else ex
  return fn


def normalize(mean=0.5, std=0.5, key: str = "image") -> Op:
  """uint8 -> float32 (x / 255 - mean) / std; mean, std scalars or per channel."""
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  def fn(ex, rng):
    return {**ex, key: (np.asarray(ex[key], np.float32) / 255.0 - mean) / std}
  return fn


def onehot(num_classes: int, key: str = "label", out_key: str = "labels",
           smoothing: float = 0.0) -> Op:
  """Integer label -> float32 one-hot of `num_classes`, optionally smoothed."""
  def fn(ex, rng):
    label = int(ex[key])
    if not 0 <= label < num_classes:
      raise ValueError(f"label {label} outside [0, {num_classes})")
    out = np.full((num_classes,), smoothing / num_classes, np.float32)
    out[label] += 1.0 - smoothing
    return {**ex, out_key: out}
  return fn


def keep(*keys: str) -> Op:
  """Drops every feature but `keys`."""
  def fn(ex, rng):
    return {k: ex[k] for k in keys}
  return fn


def _literal(node: ast.AST, where: str):
  try:
    return ast.literal_eval(node)
  except ValueError:
    raise ConfigError(f"{where}: arguments must be literals, got {ast.unparse(node)!r}") from None


def pp_ops() -> registry.Chain:
  """The generic ops of `vision_jax.data` and the task-specific ones of `vision_jax.tasks`."""
  from vision_jax import data, tasks  # The two name tables (no heavy imports).
  return registry.Chain("preprocessing op", data.PP_OPS, tasks.PP_OPS)


def op_names(spec: str) -> list[str]:
  """The op names of a pp string, in order (its syntax is checked by `parse`)."""
  names = []
  for piece in filter(None, (p.strip() for p in spec.split("|"))):
    try:
      node = ast.parse(piece, mode="eval").body
    except SyntaxError:
      continue
    node = node.func if isinstance(node, ast.Call) else node
    if isinstance(node, ast.Name):
      names.append(node.id)
  return names


def parse(spec: str, where: str = "pp") -> list[Op]:
  """Parses and binds a pp string; every error names the op and the key."""
  ops, table = [], pp_ops()
  for piece in filter(None, (p.strip() for p in spec.split("|"))):
    try:
      node = ast.parse(piece, mode="eval").body
    except SyntaxError:
      raise ConfigError(f"{where}: cannot parse {piece!r}.") from None
    call = node if isinstance(node, ast.Call) else None
    name_node = call.func if call else node
    if not isinstance(name_node, ast.Name):
      raise ConfigError(f"{where}: {piece!r} is not an op name or call.")
    try:
      factory = table.get(name_node.id)
    except KeyError as e:
      raise ConfigError(f"{where}: {e.args[0]}") from None
    args = [_literal(a, where) for a in call.args] if call else []
    kwargs = {k.arg: _literal(k.value, where) for k in call.keywords} if call else {}
    try:
      inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as e:
      raise ConfigError(f"{where}: bad arguments for {name_node.id!r}: {e}") from None
    ops.append(factory(*args, **kwargs))
  return ops


class Preprocess:
  """The ops of a pp string applied in order; picklable for Grain workers."""

  def __init__(self, spec: str, where: str = "pp"):
    self.spec, self.where = spec, where
    self._ops: Sequence[Op] | None = None

  def __getstate__(self):
    return {"spec": self.spec, "where": self.where}

  def __setstate__(self, state):
    self.__init__(**state)

  def __call__(self, example: Example, rng: np.random.Generator) -> Example:
    if self._ops is None:
      self._ops = parse(self.spec, self.where)
    for op in self._ops:
      example = op(example, rng)
    return example
