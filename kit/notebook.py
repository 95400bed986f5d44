"""The first cell of every notebook, as one call.

    cfg = kit.setup(CONFIG, OVERRIDES)

Paths in the shipped configs (configs/, data/) are relative to the project root, so the notebook works from there;
the backend is chosen (and unsloth imported, on a GPU) before anything imports transformers.
"""

from __future__ import annotations

import os

from kit.config import Config, load_config
from kit.paths import PROJECT_ROOT
from kit.quiet import install
from kit.training.backends import activate_backend


def setup(config: str, overrides: list[str] | None = None) -> Config:
    """Work from the project root, load the config with overrides, activate its backend; noise filtered (kit.quiet)."""
    install()
    os.chdir(PROJECT_ROOT)
    cfg = load_config(config, overrides or [])
    activate_backend(cfg.train.backend, cfg.model.name)  # as the CLI: no GPU, no download of a real model
    return cfg
