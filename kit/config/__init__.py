"""The one config tree: typed sections documented field by field (`schema`), read from YAML and `key=value`
overrides (`parse`), every value checked before any work (`checks`), each key's meaning printed by `qwen3-kit
config` (`help`)."""

from kit.config.parse import load_config
from kit.config.schema import Config, ConfigError, SourceConfig, save_config

__all__ = ["Config", "ConfigError", "SourceConfig", "load_config", "save_config"]
