"""Stream one source into a pool: an Arrow file of its encoded rows (input_ids, labels, source), in file order.

Rows are converted, rendered and tokenized a batch at a time and written straight to disk, so memory does not grow
with the source: what stays in memory is a few numbers per row (their token counts), for choosing the mix. A source
can also be scanned first without tokenizing (conversion, checks, sizes in characters) and then only chosen rows
encoded: that is how the kit tokenizes no more chat than the mix can use. With `data.cache_pools` a whole source's
pool is kept in the pool cache (`cached`), so a mix at another ratio reads it instead of tokenizing again.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa

from kit.config import Config, SourceConfig
from kit.data.formats import BadRow, DataError, Filtered, to_messages
from kit.data.render import IGNORE, Labeller, encode_batch, render
from kit.data.sources import MalformedRow, iter_source
from kit.files import atomic_folder

ENCODE_CHARS = 1 << 20  # characters rendered and tokenized at a time (~250k tokens): rows enough for the
# tokenizer's threads, few enough that rendering overlaps most of the tokenizing and a batch takes little memory
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())), ("source", pa.string())])


@dataclass
class SourceStats:
    name: str
    role: str
    path: str
    rows_read: int = 0
    rows_valid: int = 0  # rows that passed conversion and filters (before length checks)
    tokens: array = field(default_factory=lambda: array("q"))  # per kept row, in file order
    trained: array = field(default_factory=lambda: array("q"))  # its labelled tokens
    chars: int = 0  # content characters of the kept rows (with `tokens`, tokens per character)
    trained_chars: int = 0
    dropped: Counter = field(default_factory=Counter)


@dataclass
class Scan:
    """The valid rows of a source, before tokenizing: where each is in the source and its size in characters."""

    stats: SourceStats  # rows read and valid, conversion drops
    rows: np.ndarray  # each valid row's position among the rows read (0-based)
    chars: np.ndarray  # each valid row's content characters
    trained_chars: np.ndarray  # the characters of the parts the labels select


def content_chars(conversation: list[dict], train_turns: str) -> tuple[int, int]:
    """Content characters of a conversation, and of the assistant turns that `train_turns` trains."""
    sizes = [len(m["content"]) + len(m.get("reasoning_content") or "") for m in conversation]
    answers = [n for n, m in zip(sizes, conversation, strict=True) if m["role"] == "assistant"]
    return sum(sizes), answers[-1] if train_turns == "final" else sum(answers)


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


def conversations(name: str, src: SourceConfig, stats: SourceStats, on_bad_row: str, cache_dir: Path,
                  select: set[int] | None = None) -> Iterator[list[dict]]:
    """Valid conversations of a source, in file order, counting reads and drops into `stats`; with `select`, only
    the rows at these positions (valid rows found by a `Scan`), the others skipped unconverted."""
    kept = 0
    for raw in iter_source(src, cache_dir):
        stats.rows_read += 1
        if select is not None and stats.rows_read - 1 not in select:
            continue
        conversation, dropped = checked(name, raw, on_bad_row, lambda r: to_messages(r.data, src))
        if dropped:
            stats.dropped[dropped] += 1
            continue
        kept += 1
        yield conversation
        if kept == (len(select) if select is not None else src.max_rows):
            return  # before reading on: the next row may be in a shard not yet downloaded


def scan(name: str, src: SourceConfig, cfg: Config, cache_dir: Path) -> Scan:
    """Convert and check every row of a source without tokenizing: counts, drops, and each valid row's size."""
    stats = SourceStats(name, src.role, src.path)
    rows, sizes = array("q"), array("q")
    for conversation in conversations(name, src, stats, cfg.data.on_bad_row, cache_dir):
        rows.append(stats.rows_read - 1)
        sizes.extend(content_chars(conversation, cfg.data.train_turns))
    stats.rows_valid = len(rows)
    sizes_np = np.frombuffer(sizes, dtype=np.int64).reshape(-1, 2)
    return Scan(stats, np.frombuffer(rows, dtype=np.int64), sizes_np[:, 0], sizes_np[:, 1])


def _list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int32)
    values = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()))


def _batches(rows: Iterator[list[dict]], train_turns: str) -> Iterator[tuple[list[list[dict]], list[tuple]]]:
    """Conversations in batches of about ENCODE_CHARS characters, with each one's `chars`."""
    batch, sizes, total = [], [], 0
    for conversation in rows:
        batch.append(conversation)
        sizes.append(content_chars(conversation, train_turns))
        total += sizes[-1][0]
        if total >= ENCODE_CHARS:
            yield batch, sizes
            batch, sizes, total = [], [], 0
    if batch:
        yield batch, sizes


def _append(writer: pa.ipc.RecordBatchFileWriter, stats: SourceStats, sizes: list[tuple], encoded: list) -> int:
    """Write a batch's kept rows to the pool file and count the batch into `stats`; returns the batch's rows."""
    kept = [(size, e) for size, e in zip(sizes, encoded, strict=True) if not isinstance(e, str)]
    stats.dropped.update(e for e in encoded if isinstance(e, str))
    for (n, trained), e in kept:
        stats.tokens.append(len(e.input_ids))
        stats.trained.append(int((e.labels != IGNORE).sum()))
        stats.chars += n
        stats.trained_chars += trained
    if kept:
        rows = [e for _, e in kept]
        writer.write_batch(pa.record_batch([_list_array([e.input_ids for e in rows]),
                                            _list_array([e.labels for e in rows]),
                                            pa.array([stats.name] * len(rows))], schema=SCHEMA))
    return len(encoded)


def encode(name: str, src: SourceConfig, cfg: Config, tokenizer, path: Path, cache_dir: Path, progress: bool,
           scanned: Scan | None = None, select: set[int] | None = None) -> SourceStats:
    """Stream one source (or the `select`ed rows of a `scanned` one) into the pool file `path`.
    Rendering (Python) of one batch overlaps the tokenization (Rust, which releases the GIL) of the previous one."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    d = cfg.data
    stats = SourceStats(name, src.role, src.path)
    labeller = Labeller(tokenizer, d.train_turns, d.train_empty_think)
    rows = conversations(name, src, stats, d.on_bad_row, cache_dir, select)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer, \
            ThreadPoolExecutor(1) as worker, tqdm(desc=f"tokenizing {name}", unit=" rows", disable=not progress,
                                                  delay=2) as bar:  # shown only once it has something to say
        pending = None
        for batch, sizes in _batches(rows, d.train_turns):
            stats.rows_valid += len(batch)
            texts = [render(tokenizer, c) for c in batch]
            if pending is not None:
                bar.update(_append(writer, stats, pending[0], pending[1].result()))
            pending = sizes, worker.submit(encode_batch, tokenizer, labeller, texts,
                                           max_length=cfg.model.max_seq_length, overlong=d.overlong)
        if pending is not None:
            bar.update(_append(writer, stats, pending[0], pending[1].result()))
    if scanned:  # the scan read every row and found the conversion drops; this pass adds the length drops
        stats.rows_read, stats.rows_valid = scanned.stats.rows_read, scanned.stats.rows_valid
        stats.dropped.update(scanned.stats.dropped)
    return stats


POOL_FILE, STATS_FILE, SIZES_FILE = "pool.arrow", "stats.json", "sizes.npz"  # a cached pool's folder


def cached(identity: dict, write: Callable[[Path], SourceStats], path: Path, cache: Path) -> SourceStats:
    """The pool that `identity` (everything that shapes it) names, from `cache/<hash>/`, written there by
    `write(file)` the first time (whole or not at all); `path` becomes a link to it. Returns its stats."""
    folder = cache / hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    if not (folder / STATS_FILE).is_file():
        with atomic_folder(folder) as tmp:
            stats = write(tmp / POOL_FILE)
            np.savez(tmp / SIZES_FILE, tokens=np.asarray(stats.tokens), trained=np.asarray(stats.trained))
            (tmp / STATS_FILE).write_text(json.dumps({f.name: getattr(stats, f.name) for f in fields(stats)
                                                      if f.name not in ("tokens", "trained")}))
    path.symlink_to(folder / POOL_FILE)
    saved, sizes = json.loads((folder / STATS_FILE).read_text()), np.load(folder / SIZES_FILE)
    return SourceStats(**saved | {"dropped": Counter(saved["dropped"]),
                                  "tokens": array("q", sizes["tokens"].astype(np.int64).tobytes()),
                                  "trained": array("q", sizes["trained"].astype(np.int64).tobytes())})
