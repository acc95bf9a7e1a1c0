"""The error a config that cannot run raises, shared by every module that checks one."""


class ConfigError(ValueError):
  """A config that cannot run; raised before any compute."""
