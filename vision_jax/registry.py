"""Name -> component lookup, imported lazily: the machinery.

Every component a config names by string resolves through a read-only table
declared by the package that holds the code (`vision_jax.models.MODELS`,
`vision_jax.tasks.TASKS` / `EVALUATORS` / `PP_OPS`, `vision_jax.optim.
OPTIMIZERS` / `SCHEDULES` / `TRANSFORMS`, `vision_jax.data.PP_OPS` /
`EMBEDDED_DATASETS`), so a config is validated without importing heavy
modules, and an unknown name fails with the nearest valid one.
"""
import difflib
import importlib
import types
from typing import Any, Mapping


def nearest(name: str, choices) -> str:
  """Returns ' Did you mean 'x'?' for the closest choice, or ''."""
  close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
  return f" Did you mean {close[0]!r}?" if close else ""


class Registry:
  """A read-only table of name -> "module:attribute" resolved on lookup."""

  def __init__(self, kind: str, table: Mapping[str, str]):
    self.kind = kind
    self._table = types.MappingProxyType(dict(table))

  def names(self) -> list[str]:
    return sorted(self._table)

  def __contains__(self, name: str) -> bool:
    return name in self._table

  def get(self, name: str) -> Any:
    if name not in self._table:
      raise KeyError(
          f"Unknown {self.kind} {name!r}.{nearest(name, self._table)} "
          f"Known {self.kind}s: {', '.join(self.names())}.")
    module_name, attr = self._table[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


class Chain:
  """Several tables looked up as one (e.g. generic and task-specific pp ops)."""

  def __init__(self, kind: str, *tables: Registry):
    self.kind, self._tables = kind, tables

  def names(self) -> list[str]:
    return sorted({n for t in self._tables for n in t.names()})

  def __contains__(self, name: str) -> bool:
    return any(name in t for t in self._tables)

  def get(self, name: str) -> Any:
    for table in self._tables:
      if name in table:
        return table.get(name)
    raise KeyError(f"Unknown {self.kind} {name!r}.{nearest(name, self.names())} "
                   f"Known {self.kind}s: {', '.join(self.names())}.")
