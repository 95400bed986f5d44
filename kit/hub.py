"""Where the kit keeps downloads and prepared data."""

from __future__ import annotations

import os
from pathlib import Path

AUTODL_DATA_DISK = Path("/root/autodl-tmp")


def cache_root(configured: str = "") -> Path:
    """The kit's cache: `configured`, else $QWEN3_KIT_CACHE, else AutoDL's data disk, else ~/.cache/qwen3-kit."""
    if configured:
        return Path(configured).expanduser()
    if os.environ.get("QWEN3_KIT_CACHE"):
        return Path(os.environ["QWEN3_KIT_CACHE"]).expanduser()
    if AUTODL_DATA_DISK.is_dir():  # the 30 GB system disk fills up; the data disk is where models belong
        return AUTODL_DATA_DISK / "qwen3-kit"
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "qwen3-kit"


def resolve_model(model) -> Path:
    """The local folder for a `ModelConfig`: the tiny default (built once), a local folder, or a download."""
    if model.name == "tiny":
        from kit.smoke import build_tiny_model

        return build_tiny_model()
    path = Path(model.name).expanduser()
    if path.is_dir():
        return path
    if model.source == "local":
        raise FileNotFoundError(f"model.name '{model.name}' is not a folder, and model.source is local.")
    return download_model(model.name, source=model.source, cache_dir=model.cache_dir, revision=model.revision,
                          token=model.token).path
