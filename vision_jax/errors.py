"""Errors raised before any compute, shared by the modules that check configs and data."""


class ConfigError(ValueError):
  """A config that cannot run; raised before any compute."""


class DataMissingError(FileNotFoundError):
  """A named dataset, split or annotation file is not where it was looked for."""
