"""Where the kit's files live: the project's own folders and the cache (models, data sets, prepared mixes)."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # configs/ and data/ paths in shipped configs are relative to it
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


def local_matches(path: str) -> list[Path]:
    """The files a local path or glob names (`data/*.jsonl`, `~/sets/x.parquet`), sorted; [] when none."""
    p = Path(os.path.expanduser(path))
    if p.exists():
        return [p]
    anchor = Path(p.anchor) if p.is_absolute() else Path(".")
    pattern = str(p.relative_to(p.anchor)) if p.is_absolute() else str(p)
    return sorted(anchor.glob(pattern))


def shown(path: str | Path) -> str:
    """A path as a message names it; a relative one says what it is relative to (the folder a script started in)."""
    if Path(path).expanduser().is_absolute():
        return f"'{path}'"
    return f"'{path}' (relative to {Path.cwd()})"
