"""The sources a mix reads, and their rows, streamed a file (or a hub shard) at a time.

Hub data sets are fetched shard by shard through kit.hub as the stream reaches them (datasets' streaming cannot
reach ModelScope). JSON and JSONL are read by hand: a bad line must be named by file and line and skipped where
data.on_bad_row says so, which datasets' readers, failing the whole file, cannot do.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from kit.data.formats import BadRow, DataError, Filtered, detect, to_messages
from kit.paths import local_matches

READ_BATCH = 1024  # rows per parquet record batch


def mix_sources(d) -> list[tuple[str, object]]:
    """(name, SourceConfig) of each source the mix reads: the recipe's reasoning (unless chat_ratio is 1), its chat
    (unless chat_ratio is 0 or it has no path), then data.sources, each with its own share."""
    out = [("reasoning", d.reasoning)] if d.chat_ratio < 1 and d.reasoning.path else []
    out += [("chat", replace(d.chat, share=d.chat_ratio))] if d.chat_ratio > 0 and d.chat.path else []
    for src in d.sources:
        stem = _name(src.path)
        out.append((stem if stem not in dict(out) else f"{stem}{len(out)}", src))
    return out


def _name(path: str) -> str:
    """A source's name in the report and its eval loss: its file's stem, or for a glob the words around the
    wildcards (`openmath_*.parquet` -> openmath) or else its folder's (`mine/*.jsonl` -> mine)."""
    p = Path(path.rstrip("/"))
    for part in (p.stem, *(folder.name for folder in p.parents)):
        if name := re.sub(r"[*?\[\]]", "", part).strip("_-. "):
            return name
    return "source"


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
            yield RawRow(data, str(path), number) if isinstance(data, dict) else \
                MalformedRow(str(path), number, f"expected a JSON object, got {type(data).__name__}")


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
    rows = rows["data"] if isinstance(rows, dict) and isinstance(rows.get("data"), list) else rows
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of rows (or {{\"data\": [...]}}).")
    for number, data in enumerate(rows, start=1):
        yield RawRow(data, str(path), number) if isinstance(data, dict) else \
            MalformedRow(str(path), number, f"row {number} is not a JSON object")


def _read_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=READ_BATCH)
        number = 0
        for batch in batches:
            for data in batch.to_pylist():
                number += 1
                yield RawRow(data, str(path), number)
    except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
        raise DataError(f"{path} is not a readable parquet file ({str(e).splitlines()[0]}).") from None


READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet}


def read_files(paths: list[Path]) -> Iterator[RawRow | MalformedRow]:
    """Rows of each file in turn; a malformed line comes back as a `MalformedRow` for the caller to judge."""
    for path in paths:
        if path.suffix.lower() not in READERS:
            raise DataError(f"{path}: unsupported file type '{path.suffix}'; use .jsonl, .json or .parquet.")
        yield from READERS[path.suffix.lower()](path)


def local_files(src) -> list[Path]:
    files = []
    for p in local_matches(src.path):
        files += sorted(f for f in p.rglob("*") if f.suffix in READERS) if p.is_dir() else [p] if p.is_file() else []
    if not files:
        raise DataError(f"data source '{src.path}' matches no .jsonl, .json or .parquet file.")
    return files


def iter_source(src, cache_dir: Path) -> Iterator[RawRow | MalformedRow]:
    """All rows of a source, streamed; a source without a row is an error naming it, not silently left out."""
    from kit.hub import dataset_files

    files = read_files(local_files(src)) if src.where == "local" else \
        (row for shard in dataset_files(src, cache_dir) for row in read_files([shard]))
    empty = True
    for row in files:
        empty = False
        yield row
    if empty:
        raise DataError(f"data source '{src.path}' has no rows (its files are empty); fill it or remove it "
                        "from the config.")


def source_identity(src, cache_dir: Path) -> dict:
    """What makes a source's content what it is, for the fingerprint: a file's size and time, or a hub split's
    listing (sizes and hashes), so a re-published set is prepared again."""
    if src.where != "local":
        from kit.hub import content_id, dataset_listing, split_shards

        return {"hub": src.where, "id": src.path, "split": src.split, "subset": src.subset, "revision": src.revision,
                "content": content_id(split_shards(src, dataset_listing(src, cache_dir)))}
    return {"files": [(str(p.resolve()), os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in local_files(src)]}


@dataclass
class Counts:
    """A source's rows as read: how many, how many converted, and why the others were dropped."""

    name: str
    role: str
    path: str
    read: int = 0
    valid: int = 0
    dropped: Counter = field(default_factory=Counter)


def checked(name: str, raw, on_bad_row: str, convert: Callable):
    """(`convert(raw)`, "") for a good row, or (None, the key its drop is counted under); raises DataError naming the
    source, file and row where `on_bad_row` is error (a filtered row is always counted, never an error)."""
    try:
        if isinstance(raw, MalformedRow):
            raise raw
        return convert(raw), ""
    except MalformedRow as e:
        if on_bad_row == "error":
            raise DataError(f"source '{name}': {e}") from None
        return None, e.key
    except BadRow as e:
        if on_bad_row == "error":
            raise e.located(f"source '{name}' ({raw.file}) row {raw.line}") from None
        return None, e.reason
    except Filtered as e:
        return None, f"filtered_{e.reason}"


def conversations(name: str, src, counts: Counts, on_bad_row: str, cache_dir: Path) -> Iterator[list[dict]]:
    """Valid conversations of a source in file order, counted into `counts`; an auto format (and role) read off row
    1."""
    fmt = None if src.format == "auto" else src.format
    for raw in iter_source(src, cache_dir):
        counts.read += 1
        if fmt is None and isinstance(raw, RawRow):
            fmt = detect(raw.data)
        conversation, dropped = checked(name, raw, on_bad_row, lambda r, f=fmt: to_messages(r.data, src, f))
        if dropped:
            counts.dropped[dropped] += 1
            continue
        counts.valid += 1
        if counts.role == "auto":
            counts.role = "reasoning" if "</think>" in conversation[-1]["content"] or \
                conversation[-1].get("reasoning_content") else "chat"
        yield conversation
        if counts.valid == src.max_rows:
            return  # before reading on: the next row may be in a shard not yet downloaded
