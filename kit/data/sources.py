"""Stream raw rows from local files or hub data sets, a batch at a time, so a 3.2M-row split never sits in memory.

Local files: `.jsonl` (one object per line), `.json` (a list of objects), `.parquet` (read in record batches).
Hub data sets (ModelScope, Hugging Face) are fetched shard by shard into the cache and read the same way,
so `max_rows` stops the download as soon as enough rows have been read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kit.config import SourceConfig
from kit.data.formats import DataError
from kit.paths import local_matches

READ_BATCH = 1024  # rows per parquet record batch


@dataclass
class RawRow:
    """One row as read, with where it came from (for error messages)."""

    data: dict
    file: str
    line: int  # 1-based line (jsonl) or row number within the file


class MalformedRow(ValueError):
    """A line that is not a JSON object; carries the file and line."""

    def __init__(self, file: str, line: int, reason: str):
        super().__init__(f"{file} line {line}: {reason}")
        self.file, self.line, self.reason = file, line, reason


# JSON and JSONL are read by hand, not with datasets' readers: a bad line must be named by its file and line number,
# and skipped and counted where data.on_bad_row says so, which a reader that fails the whole file cannot do.
def _read_jsonl(path: Path) -> Iterator[RawRow | MalformedRow]:
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                data = json.loads(text)
            except json.JSONDecodeError as e:
                yield MalformedRow(str(path), number, f"invalid JSON ({e.msg} at column {e.colno})")
                continue
            if not isinstance(data, dict):
                yield MalformedRow(str(path), number, f"expected a JSON object, got {type(data).__name__}")
                continue
            yield RawRow(data, str(path), number)


def _read_json(path: Path) -> Iterator[RawRow | MalformedRow]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path} line {e.lineno}: invalid JSON ({e.msg})") from None
    if isinstance(rows, dict) and isinstance(rows.get("data"), list):
        rows = rows["data"]
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of rows (or {{\"data\": [...]}}).")
    for number, data in enumerate(rows, start=1):
        if isinstance(data, dict):
            yield RawRow(data, str(path), number)
        else:
            yield MalformedRow(str(path), number, f"row {number} is not a JSON object")


def _read_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH):
        for data in batch.to_pylist():
            number += 1
            yield RawRow(data, str(path), number)


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}


def read_files(paths: list[Path]) -> Iterator[RawRow | MalformedRow]:
    """Rows of each file in turn; a malformed line comes back as a `MalformedRow` for the caller to judge."""
    for path in paths:
        reader = READERS.get(path.suffix.lower())
        if reader is None:
            raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .jsonl, .json or .parquet.")
        yield from reader(path)


def _split_files(files: list[str], split: str) -> list[str]:
    """The data files of a split, in order: `data/cot-00000-of-00144.parquet`, `train/part-0.parquet`, ..."""
    data_files = [f for f in files if Path(f).suffix in READERS]
    named = [f for f in data_files if Path(f).name.startswith(f"{split}-") or f"/{split}/" in f"/{f}"
             or Path(f).stem == split]
    return sorted(named or (data_files if split in ("", "train") else []))


def _modelscope_shards(src: SourceConfig, cache_dir: Path, endpoint: str | None):
    """(list the data set's files, fetch one of them) through the modelscope client."""
    from modelscope import dataset_snapshot_download
    from modelscope_hub.api import HubApi

    sizes: dict[str, int] = {}
    local = cache_dir / "modelscope" / src.path

    def listing() -> list[str]:
        files = [f for f in HubApi(endpoint=endpoint).list_repo_files(src.path, "dataset") if not f.is_dir]
        sizes.update({f.path: f.size for f in files})
        return list(sizes)

    def fetch(name: str) -> Path:
        if (local / name).is_file() and (local / name).stat().st_size == sizes[name]:
            return local / name  # complete already: a second pass over the source stays offline
        dataset_snapshot_download(src.path, local_dir=str(local), allow_patterns=[name], endpoint=endpoint)
        return local / name

    return listing, fetch


def _huggingface_shards(src: SourceConfig, cache_dir: Path, endpoint: str | None):
    """(list the data set's files, fetch one of them) through huggingface_hub, which caches each file itself."""
    from huggingface_hub import HfApi, hf_hub_download

    def listing() -> list[str]:
        return HfApi(endpoint=endpoint).list_repo_files(src.path, repo_type="dataset")

    def fetch(name: str) -> Path:
        return Path(hf_hub_download(src.path, name, repo_type="dataset", cache_dir=str(cache_dir / "hf"),
                                    endpoint=endpoint))

    return listing, fetch


def hub_files(src: SourceConfig, cache_dir: Path) -> Iterator[Path]:
    """Download a hub data set's split one shard at a time (each shard once; reruns find it in the cache)."""
    from kit.hub import explain_error, hub_endpoint

    endpoint = hub_endpoint(src.hub)
    shards_of = _modelscope_shards if src.hub == "modelscope" else _huggingface_shards
    listing, fetch = shards_of(src, cache_dir, endpoint)
    try:
        files = listing()
    except Exception as e:
        raise explain_error(e, src.path, src.hub, endpoint) from None
    if src.subset:  # a config's files live under a folder of its name
        files = [f for f in files if f"/{src.subset}/" in f"/{f}"]
    shards = _split_files(files, src.split)
    if not shards:
        raise DataError(f"{src.hub} data set '{src.path}' has no data files for split '{src.split}' "
                         f"(files: {', '.join(files[:8])}{'...' if len(files) > 8 else ''}).")
    for name in shards:
        yield fetch(name)


def local_files(src: SourceConfig) -> list[Path]:
    matches = [p for p in local_matches(src.path) if p.is_file() or p.is_dir()]
    files = []
    for p in matches:
        files += sorted(f for f in p.rglob("*") if f.suffix in READERS) if p.is_dir() else [p]
    if not files:
        raise DataError(f"data source '{src.path}' matches no .jsonl, .json or .parquet file.")
    return files


def iter_source(src: SourceConfig, cache_dir: Path) -> Iterator[RawRow | MalformedRow]:
    """All rows of a source, streamed; hub shards are downloaded lazily as the stream reaches them."""
    if src.hub == "local":
        yield from read_files(local_files(src))
        return
    for shard in hub_files(src, cache_dir):
        yield from read_files([shard])


def source_identity(src: SourceConfig) -> dict:
    """What makes a source's content what it is, for the prepared-data fingerprint."""
    if src.hub != "local":
        return {"hub": src.hub, "id": src.path, "split": src.split, "subset": src.subset}
    return {"files": [(str(p.resolve()), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in local_files(src)]}
