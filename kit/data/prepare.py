"""The data pipeline: sources -> conversations -> template text -> tokens and labels -> the mix -> Arrow files.

    prepared = prepare_data(cfg, tokenizer)       # kit.data.prepare_data
    prepared.train[0]["input_ids"], prepared.report["mix"]["chat_share_tokens"]

Each source is streamed in batches and its encoded rows go straight to an Arrow file on disk, so memory stays
flat however large the source. The result is cached under a fingerprint of everything that shapes it (config,
tokenizer, source files); a rerun memory-maps it at once. It is built in a temporary folder and renamed into
place when complete, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from kit.config import Config, SourceConfig
from kit.data.formats import BadRow, DataError, Filtered, to_messages
from kit.data.mix import choose_counts, split_eval
from kit.data.render import encode_batch, render
from kit.data.sources import MalformedRow, iter_source, source_identity
from kit.files import atomic_folder

FORMAT_VERSION = 3  # bump when the prepared files' layout or labelling changes
ENCODE_BATCH = 512
GATHER_BATCH = 4096
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())), ("source", pa.string())])


@dataclass
class SourceStats:
    name: str
    role: str
    path: str
    rows_read: int = 0
    rows_valid: int = 0  # rows that passed conversion and filters (before length checks)
    chars: list[int] = field(default_factory=list)  # content characters of each valid row (scan of lazy sources)
    tokens: list[int] = field(default_factory=list)  # per kept row, in file order
    trained: list[int] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


@dataclass
class Prepared:
    """The prepared mix: memory-mapped `datasets.Dataset`s plus the data report."""

    train: object
    eval: object | None
    report: dict
    path: Path
    cached: bool


def data_sources(cfg: Config) -> list[tuple[str, SourceConfig]]:
    """The sources the mix reads, named as the report names them."""
    out = []
    if cfg.data.chat_ratio < 1:
        out.append(("reasoning", cfg.data.reasoning))
    if cfg.data.chat_ratio > 0:
        out.append(("chat", cfg.data.chat))
    out += [(f"extra{i}:{Path(s.path).stem}", s) for i, s in enumerate(cfg.data.extra)]
    return out


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256(str(tokenizer.chat_template).encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    return h.hexdigest()


def fingerprint(cfg: Config, tokenizer, epochs: int, cache_dir: Path) -> str:
    data = asdict(cfg.data)
    data.pop("num_proc")
    identity = {
        "version": FORMAT_VERSION, "data": data, "max_seq_length": cfg.model.max_seq_length, "epochs": epochs,
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "sources": [source_identity(src, cache_dir) for _, src in data_sources(cfg)],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _conversations(name: str, src: SourceConfig, stats: SourceStats, on_bad_row: str, cache_dir: Path,
                   select: set[int] | None = None) -> Iterator[list[dict]]:
    """Valid conversations of a source, in file order; with `select`, only those with these valid-row ordinals."""
    kept = 0
    for raw in iter_source(src, cache_dir):
        stats.rows_read += 1
        try:
            if isinstance(raw, MalformedRow):
                raise raw
            conversation = to_messages(raw.data, src)
        except MalformedRow as e:
            if on_bad_row == "error":
                raise DataError(f"source '{name}': {e}") from None
            stats.dropped[e.key] += 1
            continue
        except BadRow as e:
            if on_bad_row == "error":
                raise e.located(f"source '{name}' ({raw.file}) row {raw.line}") from None
            stats.dropped[e.reason] += 1
            continue
        except Filtered as e:
            stats.dropped[f"filtered_{e.reason}"] += 1
            continue
        kept += 1
        if select is None or kept - 1 in select:
            yield conversation
        if src.max_rows and kept == src.max_rows:
            return  # before reading on: the next row may be in a shard not yet downloaded


def _list_array(arrays: list[np.ndarray]) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])]).astype(np.int32)
    values = np.concatenate(arrays) if arrays else np.zeros(0, np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()))


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _chars(conversation: list[dict]) -> int:
    return sum(len(m["content"]) for m in conversation)


def _scan(name: str, src: SourceConfig, on_bad_row: str, cache_dir: Path) -> SourceStats:
    """Convert and check every row of a source without tokenizing: counts, drops, and each row's characters."""
    stats = SourceStats(name, src.role, src.path)
    for conversation in _conversations(name, src, stats, on_bad_row, cache_dir):
        stats.chars.append(_chars(conversation))
    stats.rows_valid = len(stats.chars)
    return stats


def _encode_source(name: str, src: SourceConfig, cfg: Config, tokenizer, path: Path, cache_dir: Path,
                   progress: bool, scanned: SourceStats | None = None, select: set[int] | None = None) -> SourceStats:
    """Stream one source (or the `select`ed valid rows of a `scanned` one) into an Arrow file of encoded rows.
    Rendering (Python) of one batch overlaps the tokenization (Rust, which releases the GIL) of the previous one."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    d = cfg.data
    stats = scanned or SourceStats(name, src.role, src.path)
    stats.tokens, stats.trained = [], []
    for reason in ("too_long", "nothing_to_train", "nothing_to_train_after_truncation"):
        stats.dropped.pop(reason, None)
    counting = SourceStats(name, src.role, src.path) if scanned else stats  # conversion drops: counted once
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, SCHEMA) as writer, \
            ThreadPoolExecutor(1) as pool, tqdm(desc=f"tokenizing {name}", unit=" rows", disable=not progress) as bar:

        def write(encoded: list) -> None:
            kept = [e for e in encoded if not isinstance(e, str)]
            stats.dropped.update(e for e in encoded if isinstance(e, str))
            stats.tokens += [len(e.input_ids) for e in kept]
            stats.trained += [int((e.labels >= 0).sum()) for e in kept]
            if kept:
                writer.write_batch(pa.record_batch([_list_array([e.input_ids for e in kept]),
                                                    _list_array([e.labels for e in kept]),
                                                    pa.array([name] * len(kept))], schema=SCHEMA))
            bar.update(len(encoded))

        pending = None
        for batch in _batches(_conversations(name, src, counting, d.on_bad_row, cache_dir, select), ENCODE_BATCH):
            if not scanned:
                stats.chars += [_chars(c) for c in batch]
            texts = [render(tokenizer, c) for c in batch]
            if pending is not None:
                write(pending.result())
            pending = pool.submit(encode_batch, tokenizer, texts, max_length=cfg.model.max_seq_length,
                                  overlong=d.overlong, train_turns=d.train_turns,
                                  train_empty_think=d.train_empty_think)
        if pending is not None:
            write(pending.result())
    if not scanned:
        stats.rows_valid = len(stats.chars)
    return stats


def _write(path: Path, tables: list[pa.Table], offsets: np.ndarray, order: np.ndarray) -> None:
    """Write the rows with global ids `order` (pool tables laid end to end), in that order, a chunk at a time."""
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
        for start in range(0, len(order), GATHER_BATCH):
            chunk = order[start:start + GATHER_BATCH]
            pools = np.searchsorted(offsets, chunk, side="right") - 1
            parts, positions = [], []
            for pool in np.unique(pools):
                where = np.nonzero(pools == pool)[0]
                parts.append(tables[pool].take(pa.array(chunk[where] - offsets[pool])))
                positions.append(where)
            merged = pa.concat_tables(parts)
            writer.write_table(merged.take(pa.array(np.argsort(np.concatenate(positions)))))


def _percentiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    p = np.percentile(values, [50, 90, 99])
    return {"p50": int(p[0]), "p90": int(p[1]), "p99": int(p[2]), "max": int(values.max())}


def _choose(cfg: Config, stats: list[SourceStats], tokens: np.ndarray, offsets: np.ndarray, epochs: int,
            pools_path: Path, chat_estimates: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, bool]:
    """Global row ids of each epoch's mix, and of the eval rows held out of all of them. The token counts of the
    shuffled pools are saved to `pools_path`, so other ratios can be explored without tokenizing again (chat rows
    that were never tokenized count with `chat_estimates`). The flag says some epoch used every encoded chat row."""
    d = cfg.data
    ids = {role: np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i, s in enumerate(stats)
                                 if s.role == role] or [np.zeros(0, np.int64)]) for role in ("reasoning", "chat")}

    def shuffled(role: str, seed: int) -> np.ndarray:
        return ids[role][np.random.default_rng(seed).permutation(len(ids[role]))]

    reasoning, chat0 = shuffled("reasoning", d.seed), shuffled("chat", d.seed)
    eval_r, eval_c = split_eval(len(reasoning), len(chat0), d.eval_rows, d.chat_ratio)
    held_chat = chat0[len(chat0) - eval_c:]
    eval_ids = np.concatenate([reasoning[len(reasoning) - eval_r:], held_chat])
    reasoning = reasoning[:len(reasoning) - eval_r]

    np.savez(pools_path, reasoning=tokens[reasoning],
             chat=np.concatenate([tokens[chat0[~np.isin(chat0, held_chat)]], chat_estimates]))
    mixes, exhausted = [], False
    for epoch in range(epochs):
        chat = chat0 if epoch == 0 else shuffled("chat", d.seed + epoch)
        chat = chat[~np.isin(chat, held_chat)]
        n_r, n_c = choose_counts(tokens[reasoning], tokens[chat], d.chat_ratio, d.ratio_by, d.max_rows, d.max_tokens)
        exhausted |= 0 < d.chat_ratio < 1 and n_c == len(chat)
        mix = np.concatenate([reasoning[:n_r], chat[:n_c]])
        mixes.append(mix[np.random.default_rng(d.seed + epoch).permutation(len(mix))])
    return mixes, eval_ids, exhausted


CHAT_MARGIN = 1.15  # tokenize this much more chat than the ratio needs (drops, estimate error)


def _chat_selection(cfg: Config, encoded: list[SourceStats], scans: dict[int, SourceStats],
                    epochs: int) -> tuple[dict[int, set[int]] | None, np.ndarray]:
    """Which valid chat rows to tokenize: a seeded random subset large enough for the mix, or None for all.

    The reasoning side is already encoded, so how much chat the ratio asks for is known: rows directly, tokens
    estimated from characters at the reasoning rows' tokens-per-character. Also returns the estimated token counts
    of the rows left out (for `ratio_sweep`). A shortfall is caught after mixing (then all rows are tokenized).
    """
    d = cfg.data
    ids = [(i, k) for i, scan in scans.items() for k in range(scan.rows_valid)]
    per_char = sum(sum(s.tokens) for s in encoded) / max(1, sum(sum(s.chars) for s in encoded))
    estimates = np.array([scans[i].chars[k] for i, k in ids], dtype=np.float64) * per_char + 16  # + template
    order = np.random.default_rng(d.seed).permutation(len(ids))
    share = d.chat_ratio / (1 - d.chat_ratio)
    if d.ratio_by == "rows":
        need = int(sum(len(s.tokens) for s in encoded) * share * epochs * CHAT_MARGIN)
    else:
        target = sum(sum(s.tokens) for s in encoded) * share * epochs * CHAT_MARGIN
        need = int(np.searchsorted(np.cumsum(estimates[order]), target)) + 1
    take = need + d.eval_rows + 64
    if take >= 0.9 * len(ids):
        return None, np.zeros(0, dtype=np.int64)
    selection: dict[int, set[int]] = {i: set() for i in scans}
    for g in order[:take]:
        selection[ids[g][0]].add(ids[g][1])
    return selection, np.round(estimates[order[take:]]).astype(np.int64)


def _report(cfg: Config, stats: list[SourceStats], tokens: np.ndarray, trained: np.ndarray, offsets: np.ndarray,
            mixes: list[np.ndarray], eval_ids: np.ndarray, fp: str, seconds: float) -> dict:
    train = np.concatenate(mixes)
    sources, totals = {}, Counter()
    for i, s in enumerate(stats):
        rows = train[(train >= offsets[i]) & (train < offsets[i + 1])]
        sources[s.name] = {
            "role": s.role, "path": s.path, "rows_read": s.rows_read, "rows_valid": s.rows_valid,
            "rows_kept": len(s.tokens),
            "rows_used": int(len(rows)), "tokens_used": int(tokens[rows].sum()),
            "trained_tokens_used": int(trained[rows].sum()),
            "eval_rows": int(((eval_ids >= offsets[i]) & (eval_ids < offsets[i + 1])).sum()),
            "dropped": dict(sorted(s.dropped.items())), "length": _percentiles(tokens[rows]),
        }
        totals[f"{s.role}_rows"] += int(len(rows))
        totals[f"{s.role}_tokens"] += int(tokens[rows].sum())
    rows = totals["reasoning_rows"] + totals["chat_rows"]
    toks = totals["reasoning_tokens"] + totals["chat_tokens"]
    return {
        "fingerprint": fp,
        "asked": {"chat_ratio": cfg.data.chat_ratio, "ratio_by": cfg.data.ratio_by, "seed": cfg.data.seed,
                  "max_rows": cfg.data.max_rows, "max_tokens": cfg.data.max_tokens,
                  "max_seq_length": cfg.model.max_seq_length, "overlong": cfg.data.overlong},
        "sources": sources,
        "mix": {"train_rows": rows, "train_tokens": toks, "eval_rows": int(len(eval_ids)), "epochs": len(mixes),
                "chat_rows": totals["chat_rows"], "reasoning_rows": totals["reasoning_rows"],
                "chat_share_rows": round(totals["chat_rows"] / rows, 6) if rows else 0.0,
                "chat_share_tokens": round(totals["chat_tokens"] / toks, 6) if toks else 0.0},
        "seconds": round(seconds, 2),
    }


def ratio_sweep(prepared: Prepared, ratios: list[float], by: str = "rows") -> list[dict]:
    """What the mix would hold at other chat ratios, from the prepared pools' token counts (no re-tokenizing).

    Returns one dict per ratio: reasoning/chat rows and tokens, and the chat share by rows and by tokens.
    """
    pools = np.load(prepared.path / "pools.npz")
    out = []
    for ratio in ratios:
        n_r, n_c = choose_counts(pools["reasoning"], pools["chat"], ratio, by)
        r_tok, c_tok = int(pools["reasoning"][:n_r].sum()), int(pools["chat"][:n_c].sum())
        out.append({"chat_ratio": ratio, "by": by, "reasoning_rows": n_r, "chat_rows": n_c,
                    "reasoning_tokens": r_tok, "chat_tokens": c_tok,
                    "chat_share_rows": n_c / max(1, n_r + n_c), "chat_share_tokens": c_tok / max(1, r_tok + c_tok)})
    return out


def padding_share(lengths: list[int], batch: int, *, packed: bool = False, seq: int = 0) -> float:
    """Share of pad tokens when rows (in this order) are batched and padded to each batch's longest row; with
    `packed`, rows are first packed best-fit-decreasing into sequences of at most `seq` tokens."""
    import bisect

    if packed:
        free: list[int] = []  # the room left in each pack, sorted
        for n in sorted(lengths, reverse=True):
            i = bisect.bisect_left(free, n)  # the fullest pack this row still fits in
            room = free.pop(i) if i < len(free) else seq
            bisect.insort(free, room - n)
        lengths = [seq - room for room in free]
    padded = total = 0
    for i in range(0, len(lengths), batch):
        chunk = lengths[i:i + batch]
        padded += max(chunk) * len(chunk)
        total += sum(chunk)
    return (padded - total) / padded if padded else 0.0


def format_report(report: dict) -> str:
    """The data report as a printed table."""
    head = (f"{'source':<22}{'role':<10}{'read':>9}{'valid':>9}{'tokenized':>10}{'used':>9}{'tokens':>12}"
            f"{'p50':>7}{'p90':>7}{'max':>7}")
    lines = [head, "-" * len(head)]
    for name, s in report["sources"].items():
        length = s["length"] or {"p50": 0, "p90": 0, "max": 0}
        lines.append(f"{name[:21]:<22}{s['role']:<10}{s['rows_read']:>9}{s['rows_valid']:>9}{s['rows_kept']:>10}"
                     f"{s['rows_used']:>9}{s['tokens_used']:>12}{length['p50']:>7}{length['p90']:>7}{length['max']:>7}")
        for reason, n in s["dropped"].items():
            lines.append(f"{'':<24}dropped {reason}: {n}")
    m, a = report["mix"], report["asked"]
    lines.append("-" * len(head))
    lines.append(f"mix: {m['train_rows']} train rows ({m['train_tokens']} tokens), {m['eval_rows']} eval rows, "
                 f"{m['epochs']} epoch mix(es)")
    lines.append(f"chat share: {m['chat_share_rows']:.2%} by rows, {m['chat_share_tokens']:.2%} by tokens "
                 f"(asked {a['chat_ratio']:.2%} by {a['ratio_by']})")
    return "\n".join(lines)


def _load(path: Path, report: dict, cached: bool) -> Prepared:
    from datasets import Dataset

    eval_path = path / "eval.arrow"
    return Prepared(Dataset.from_file(str(path / "train.arrow")),
                    Dataset.from_file(str(eval_path)) if report["mix"]["eval_rows"] else None,
                    report, path, cached)


def prepare_data(cfg: Config, tokenizer, *, cache_dir: str | Path | None = None, epochs: int = 1,
                 progress: bool = True) -> Prepared:
    """Build (or reuse) the tokenized, labelled mix that `cfg.data` describes.

    Args:
        cfg: the resolved config (data, model.max_seq_length).
        tokenizer: a fast tokenizer whose chat template defines the format.
        cache_dir: where prepared sets and hub downloads live (default: the kit's cache root).
        epochs: with `data.redraw_chat_each_epoch`, one mix per epoch, each with a fresh chat subset.
    Returns:
        `Prepared` with `train`/`eval` datasets (columns input_ids, labels, source) and the report.
    Raises:
        ValueError (BadRow) naming source, file, row and field for bad input when `data.on_bad_row` is error.
    """
    from kit.paths import cache_root

    root = Path(cache_dir) if cache_dir else cache_root(cfg.model.cache_dir)
    epochs = epochs if cfg.data.redraw_chat_each_epoch else 1
    fp = fingerprint(cfg, tokenizer, epochs, root / "datasets")
    final = root / "prepared" / fp
    if (final / "report.json").is_file():
        return _load(final, json.loads((final / "report.json").read_text()), cached=True)

    if cfg.data.num_proc:
        os.environ["RAYON_NUM_THREADS"] = str(cfg.data.num_proc)
    started = time.perf_counter()
    with atomic_folder(final) as tmp:
        sources = data_sources(cfg)
        # Chat is tokenized lazily when reasoning drives the mix: only as many chat rows as the ratio can use.
        lazy = 0 < cfg.data.chat_ratio < 1 and any(src.role == "reasoning" for _, src in sources)

        def encode(i: int, scanned: SourceStats | None = None, select: set[int] | None = None) -> SourceStats:
            name, src = sources[i]
            return _encode_source(name, src, cfg, tokenizer, tmp / f"pool{i}.arrow", root / "datasets", progress,
                                  scanned, select)

        stats: list[SourceStats] = [encode(i) if not lazy or src.role == "reasoning" else None
                                    for i, (_, src) in enumerate(sources)]
        scans = {i: _scan(name, src, cfg.data.on_bad_row, root / "datasets")
                 for i, (name, src) in enumerate(sources) if stats[i] is None}
        selection, estimates = (_chat_selection(cfg, [s for s in stats if s], scans, epochs) if scans
                                else (None, np.zeros(0, dtype=np.int64)))
        for i, scan in scans.items():
            stats[i] = encode(i, scan, selection[i] if selection else None)
        while True:
            tables = [pa.ipc.open_file(pa.memory_map(str(tmp / f"pool{i}.arrow"))).read_all()
                      for i in range(len(stats))]
            offsets = np.concatenate([[0], np.cumsum([len(s.tokens) for s in stats])]).astype(np.int64)
            tokens = np.concatenate([np.asarray(s.tokens, np.int64) for s in stats])
            trained = np.concatenate([np.asarray(s.trained, np.int64) for s in stats])
            mixes, eval_ids, exhausted = _choose(cfg, stats, tokens, offsets, epochs, tmp / "pools.npz", estimates)
            if not (exhausted and selection):
                break
            del tables  # the subset was too small for the mix: tokenize every chat row and choose again
            selection, estimates = None, np.zeros(0, dtype=np.int64)
            for i, scan in scans.items():
                stats[i] = encode(i, scan)
        if not sum(len(m) for m in mixes):
            raise DataError("the mix is empty: no source row survived conversion and filtering "
                             f"({', '.join(f'{s.name}: {dict(s.dropped)}' for s in stats)}).")
        _write(tmp / "train.arrow", tables, offsets, np.concatenate(mixes))
        _write(tmp / "eval.arrow", tables, offsets, eval_ids)
        del tables
        for i in range(len(stats)):
            (tmp / f"pool{i}.arrow").unlink()
        report = _report(cfg, stats, tokens, trained, offsets, mixes, eval_ids, fp, time.perf_counter() - started)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return _load(final, report, cached=False)

