"""Stream raw rows from local files or hub data sets, a batch at a time, so a 3.2M-row split never sits in memory.

Local files: `.jsonl` (one object per line), `.json` (a list of objects), `.parquet` (read in record batches).
Hub data sets (ModelScope, Hugging Face) are fetched shard by shard into the cache and read the same way,
so `max_rows` stops the download as soon as enough rows have been read.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kit.config import SourceConfig
from kit.data.formats import DataError
from kit.files import write_atomic
from kit.paths import local_matches

READ_BATCH = 1024  # rows per parquet record batch


@dataclass
class RawRow:
    """One row as read, with where it came from (for error messages)."""

    data: dict
    file: str
    line: int  # 1-based line (jsonl) or row number within the file


class MalformedRow(ValueError):
    """A line that cannot be read as a JSON object; carries the file and line, and a short key for the report."""

    def __init__(self, file: str, line: int, reason: str, key: str = "malformed_json"):
        super().__init__(f"{file} line {line}: {reason}")
        self.file, self.line, self.reason, self.key = file, line, reason, key


# JSON and JSONL are read by hand, not with datasets' readers: a bad line must be named by its file and line number,
# and skipped and counted where data.on_bad_row says so, which a reader that fails the whole file cannot do.
def _read_jsonl(path: Path) -> Iterator[RawRow | MalformedRow]:
    with open(path, "rb") as f:  # bytes: a line that is not UTF-8 is one bad row, not the end of the file
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a byte-order mark is valid UTF-8
            except UnicodeDecodeError as e:
                yield MalformedRow(str(path), number, f"not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                                                      f"{e.start + 1}); save the file as UTF-8", key="not_utf8")
                continue
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
    raw = path.read_bytes()
    try:
        rows = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save the file as UTF-8.") \
            from None
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


def _list_modelscope(src: SourceConfig, endpoint: str | None) -> list[dict]:
    from modelscope_hub.api import HubApi

    files = HubApi(endpoint=endpoint).list_repo_files(src.path, "dataset", revision=src.revision or None)
    return [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in files if not f.is_dir]


def _list_huggingface(src: SourceConfig, endpoint: str | None) -> list[dict]:
    from huggingface_hub import HfApi

    entries = HfApi(endpoint=endpoint).list_repo_tree(src.path, repo_type="dataset", recursive=True,
                                                      revision=src.revision or None)
    return [{"path": e.path, "size": e.size, "sha256": e.lfs.sha256 if e.lfs else e.blob_id}
            for e in entries if hasattr(e, "size")]


def _local_copy(src: SourceConfig, cache_dir: Path) -> Path:
    """Where a hub data set's files (and its listing) are kept: one folder per revision asked for."""
    return cache_dir / src.hub / (src.path + (f"@{src.revision}" if src.revision else ""))


def hub_listing(src: SourceConfig, cache_dir: Path) -> list[dict]:
    """The files of a hub data set as the hub lists them now (`{"path", "size", "sha256"}`), saved beside its
    shards; where the hub cannot be reached, the saved listing, with a note saying so."""
    from kit.hub import NetworkUnreachable, explain_error, hub_endpoint

    saved = _local_copy(src, cache_dir) / ".kit-listing.json"
    endpoint = hub_endpoint(src.hub)
    try:
        files = (_list_modelscope if src.hub == "modelscope" else _list_huggingface)(src, endpoint)
    except Exception as e:
        error = explain_error(e, src.path, src.hub, endpoint)
        if isinstance(error, NetworkUnreachable) and saved.is_file():
            print(f"note: {error} Using the listing saved on {time.ctime(saved.stat().st_mtime)}.")
            return json.loads(saved.read_text())
        raise error from None
    write_atomic(saved, json.dumps(files))
    return files


def split_shards(src: SourceConfig, files: list[dict]) -> list[dict]:
    """The listed files of the source's split (and subset), in order; DataError when there are none."""
    if src.subset:  # a config's files live under a folder of its name
        files = [f for f in files if f"/{src.subset}/" in f"/{f['path']}"]
    names = _split_files([f["path"] for f in files], src.split)
    if not names:
        shown = [f["path"] for f in files[:8]]
        raise DataError(f"{src.hub} data set '{src.path}' has no data files for split '{src.split}' "
                        f"(files: {', '.join(shown)}{'...' if len(files) > 8 else ''}).")
    by_path = {f["path"]: f for f in files}
    return [by_path[name] for name in names]


def _fetch(src: SourceConfig, shard: dict, cache_dir: Path) -> Path:
    """One shard into the cache, through the hub's own client (resumable); a complete copy is used as it is."""
    from kit.hub import hub_endpoint

    local = _local_copy(src, cache_dir) / shard["path"]
    if local.is_file() and local.stat().st_size == shard["size"]:
        return local  # complete already: a second pass over the source stays offline
    endpoint = hub_endpoint(src.hub)
    if src.hub == "modelscope":
        from modelscope import dataset_snapshot_download

        dataset_snapshot_download(src.path, local_dir=str(_local_copy(src, cache_dir)), allow_patterns=[shard["path"]],
                                  endpoint=endpoint, revision=src.revision or None)
    else:
        from huggingface_hub import hf_hub_download

        hf_hub_download(src.path, shard["path"], repo_type="dataset", local_dir=str(_local_copy(src, cache_dir)),
                        endpoint=endpoint, revision=src.revision or None)
    return local


def hub_files(src: SourceConfig, cache_dir: Path) -> Iterator[Path]:
    """Download a hub data set's split one shard at a time (each shard once; reruns find it in the cache)."""
    for shard in split_shards(src, hub_listing(src, cache_dir)):
        yield _fetch(src, shard, cache_dir)


def local_files(src: SourceConfig) -> list[Path]:
    matches = [p for p in local_matches(src.path) if p.is_file() or p.is_dir()]
    files = []
    for p in matches:
        files += sorted(f for f in p.rglob("*") if f.suffix in READERS) if p.is_dir() else [p]
    if not files:
        raise DataError(f"data source '{src.path}' matches no .jsonl, .json or .parquet file.")
    return files


def iter_source(src: SourceConfig, cache_dir: Path) -> Iterator[RawRow | MalformedRow]:
    """All rows of a source, streamed; hub shards are downloaded lazily as the stream reaches them. A source with no
    row at all is an error naming it (an empty file would otherwise just leave its side out of the mix)."""
    files = read_files(local_files(src)) if src.hub == "local" else \
        (row for shard in hub_files(src, cache_dir) for row in read_files([shard]))
    empty = True
    for row in files:
        empty = False
        yield row
    if empty:
        raise DataError(f"data source '{src.path}' has no rows (its files are empty); fill it or remove it "
                        "from the config.")


def source_identity(src: SourceConfig, cache_dir: Path) -> dict:
    """What makes a source's content what it is, for the prepared-data fingerprint: a hub data set's split as the hub
    lists it now (each shard's size and hash), so a re-published data set is prepared again."""
    if src.hub != "local":
        from kit.hub import content_id

        return {"hub": src.hub, "id": src.path, "split": src.split, "subset": src.subset, "revision": src.revision,
                "content": content_id(split_shards(src, hub_listing(src, cache_dir)))}
    return {"files": [(str(p.resolve()), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in local_files(src)]}
