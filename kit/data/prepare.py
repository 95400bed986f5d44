"""The data pipeline: sources -> conversations -> template text -> tokens and labels -> the mix -> Arrow files.

    prepared = prepare_data(cfg, tokenizer)       # kit.data.prepare_data
    prepared.train[0]["input_ids"], prepared.report["mix"]["chat_share_trained_tokens"]

Each source is streamed in batches into a pool file of encoded rows (`pools`), so memory stays flat however large
the source; chat is tokenized only as far as the mix can use it (the lazy selection here); `mix` draws each
epoch's rows, which are gathered into train.arrow and eval.arrow; `report` describes the result. It is cached
under a fingerprint of everything that shapes it (config, tokenizer, source files); a rerun memory-maps it at
once. It is built in a temporary folder and renamed into place when complete, so a failure leaves nothing
half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from kit.config import Config, SourceConfig
from kit.data import pools
from kit.data.formats import DataError
from kit.data.mix import Draw, Sizes, draw
from kit.data.pools import SCHEMA, Scan, SourceStats
from kit.data.report import build_report, save_pools
from kit.data.sources import source_identity
from kit.files import atomic_folder

FORMAT_VERSION = 4  # bump when the prepared files' layout, labelling, mix or report changes
GATHER_TOKENS = 1 << 19  # tokens gathered into one written batch: bounds the memory of writing the mix (~2 MB a copy)


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


@dataclass
class _Rows:
    """Every source's encoded rows laid end to end: a row's global id is its source's offset plus its place."""

    stats: list[SourceStats]

    def __post_init__(self):
        self.offsets = np.concatenate([[0], np.cumsum([len(s.tokens) for s in self.stats])]).astype(np.int64)
        self.sizes = Sizes.concat([Sizes(np.asarray(s.tokens), np.asarray(s.trained)) for s in self.stats])

    def ids(self, role: str) -> np.ndarray:
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1]) for i, s in enumerate(self.stats)
                               if s.role == role] or [np.zeros(0, np.int64)])


# Lazy chat: when reasoning drives the mix, only the chat rows it can use are tokenized, chosen before tokenizing
# from their sizes in characters. A subset that proves too small is caught after mixing: then all are tokenized.
# This much more chat than the estimate asks for, for rows dropped as too long and for the estimate's error:
CHAT_MARGIN = 1.15
# and these rows more: on a small mix a 15 % margin is a handful of rows, too few to absorb the drops.
CHAT_SPARE_ROWS = 64
# A subset only if it leaves out more than 10 % of the rows: tokenizing those few costs less than the second pass
# over every row that a subset too small would take.
SELECT_BELOW = 0.9


@dataclass
class _Selection:
    rows: dict[int, set[int]]  # per chat source, the positions of the rows to tokenize
    left_out: np.ndarray  # the others, as indices into the scans' rows laid end to end, in seeded order


def _per_char(stats: list[SourceStats]) -> tuple[float, float]:
    """Tokens per content character, and trained tokens per character of the trained turns."""
    return (sum(sum(s.tokens) for s in stats) / max(1, sum(s.chars for s in stats)),
            sum(sum(s.trained) for s in stats) / max(1, sum(s.trained_chars for s in stats)))


def _chat_selection(cfg: Config, encoded: list[SourceStats], scans: dict[int, Scan],
                    epochs: int) -> _Selection | None:
    """Which valid chat rows to tokenize: a seeded random subset large enough for the mix, or None for all.
    The reasoning side is encoded already, so the need is known: in rows, or in trained tokens estimated from the
    chat rows' characters at the reasoning rows' trained tokens per character."""
    d = cfg.data
    owner = np.concatenate([np.full(len(scan.rows), i) for i, scan in scans.items()])
    rows = np.concatenate([scan.rows for scan in scans.values()])
    order = np.random.default_rng(d.seed).permutation(len(rows))
    share = d.chat_ratio / (1 - d.chat_ratio) * epochs * CHAT_MARGIN
    if d.ratio_by == "rows":
        need = int(sum(len(s.tokens) for s in encoded) * share)
    else:
        trained = np.concatenate([scan.trained_chars for scan in scans.values()])[order] * _per_char(encoded)[1]
        need = int(np.searchsorted(np.cumsum(trained), sum(sum(s.trained) for s in encoded) * share)) + 1
    take = need + d.eval_rows + CHAT_SPARE_ROWS
    if take >= SELECT_BELOW * len(rows):
        return None
    chosen = order[:take]
    return _Selection({i: set(rows[chosen[owner[chosen] == i]].tolist()) for i in scans}, order[take:])


def _estimates(scans: dict[int, Scan], left_out: np.ndarray, chat: list[SourceStats]) -> Sizes:
    """Token counts of the chat rows never tokenized, from their characters at the tokenized ones' rates."""
    tokens_per_char, trained_per_char = _per_char(chat)
    chars = np.concatenate([scan.chars for scan in scans.values()])[left_out]
    trained_chars = np.concatenate([scan.trained_chars for scan in scans.values()])[left_out]
    return Sizes(np.round(chars * tokens_per_char).astype(np.int64),
                 np.round(trained_chars * trained_per_char).astype(np.int64))


def _pool_identity(cfg: Config, tokenizer) -> dict:
    """What shapes every source's pool besides the source itself (`data.cache_pools`): not the ratio, nor the mix."""
    d = cfg.data
    return {"version": FORMAT_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer),
            "max_seq_length": cfg.model.max_seq_length, "overlong": d.overlong, "train_turns": d.train_turns,
            "train_empty_think": d.train_empty_think, "on_bad_row": d.on_bad_row}


def _encode_sources(cfg: Config, tokenizer, folder: Path, root: Path, epochs: int,
                    progress: bool) -> tuple[_Rows, Draw, Sizes]:
    """Encode every source into a pool file in `folder` (with `data.cache_pools`, a link into the pool cache) and draw
    the mix; also the estimated sizes of the chat rows left untokenized. Chat is encoded lazily when reasoning drives
    the mix (see CHAT_MARGIN), unless the pools are cached: then whole, for any ratio to draw from."""
    sources = data_sources(cfg)
    shared = _pool_identity(cfg, tokenizer) if cfg.data.cache_pools else None

    def encode(i: int, scanned: Scan | None = None, select: set[int] | None = None) -> SourceStats:
        name, src = sources[i]

        def write(path: Path) -> SourceStats:
            return pools.encode(name, src, cfg, tokenizer, path, root / "datasets", progress, scanned, select)

        if shared is None:
            return write(folder / f"pool{i}.arrow")
        identity = {**shared, "name": name, "source": asdict(src), "content": source_identity(src, root / "datasets")}
        return pools.cached(identity, write, folder / f"pool{i}.arrow", root / "pools")

    lazy = not shared and 0 < cfg.data.chat_ratio < 1 and any(src.role == "reasoning" for _, src in sources)
    stats = [None if lazy and src.role == "chat" else encode(i) for i, (_, src) in enumerate(sources)]
    scans = {i: pools.scan(*sources[i], cfg, root / "datasets") for i, s in enumerate(stats) if s is None}
    selection = _chat_selection(cfg, [s for s in stats if s], scans, epochs) if scans else None
    while True:
        for i, scan in scans.items():
            stats[i] = encode(i, scan, selection.rows[i] if selection else None)
        rows = _Rows(stats)
        drawn = draw(cfg.data, rows.ids("reasoning"), rows.ids("chat"), rows.sizes, epochs)
        if not (drawn.exhausted and selection):
            break
        selection = None  # the subset was too small for the mix: tokenize every chat row and draw again
    estimates = _estimates(scans, selection.left_out, [stats[i] for i in scans]) if selection else Sizes.concat([])
    return rows, drawn, estimates


def _write(path: Path, batches: list[pa.RecordBatch], tokens: np.ndarray, order: np.ndarray) -> None:
    """Write the rows with global ids `order` (the pools' record `batches` laid end to end; `tokens`, each row's
    length), in that order, a bounded number of tokens at a time. Each row is taken from its own record batch:
    a take from a whole memory-mapped pool would first copy all of it."""
    starts = np.cumsum([0] + [b.num_rows for b in batches])
    ends = np.cumsum(tokens[order])
    cuts = np.unique(np.searchsorted(ends, np.arange(GATHER_TOKENS, ends[-1] if len(ends) else 0, GATHER_TOKENS)))
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
        for chunk in np.split(order, cuts):
            batch_of = np.searchsorted(starts, chunk, side="right") - 1
            parts, positions = [], []
            for b in np.unique(batch_of):
                where = np.nonzero(batch_of == b)[0]
                parts.append(batches[b].take(pa.array(chunk[where] - starts[b])))
                positions.append(where)
            if parts:
                gathered = pa.Table.from_batches(parts).combine_chunks()
                writer.write_table(gathered.take(pa.array(np.argsort(np.concatenate(positions)))))


class Shortfall(DataError):
    """Chat too short for data.chat_ratio, unless data.allow_shortfall: a matter of the ratio, not of the data."""


def _check_ratio(cfg: Config, drawn: Draw) -> None:
    """Chat that runs out bounds the whole mix: keeping data.chat_ratio leaves reasoning rows out (all of them, when
    no chat row survived). That stops with the numbers, or with data.allow_shortfall goes on with a warning."""
    if not drawn.left_out:
        return
    d, kept = cfg.data, len(drawn.reasoning) - drawn.left_out
    found = (f"chat runs short: its {len(drawn.chat)} usable rows keep data.chat_ratio={d.chat_ratio} by {d.ratio_by} "
             f"only with {kept} of the {len(drawn.reasoning)} reasoning rows")
    if not d.allow_shortfall:
        raise Shortfall(f"{found}; add chat data, lower data.chat_ratio, cap data.max_rows, or set "
                        "data.allow_shortfall=true to train on the smaller mix.")
    print(f"warning: {found}; data.allow_shortfall=true, so the smaller mix is used.")


def _write_mix(folder: Path, rows: _Rows, drawn: Draw) -> None:
    """train.arrow and eval.arrow from the pool files, which are then removed."""
    paths = [folder / f"pool{i}.arrow" for i in range(len(rows.stats))]
    readers = [pa.ipc.open_file(pa.memory_map(str(p))) for p in paths]
    batches = [r.get_batch(i) for r in readers for i in range(r.num_record_batches)]
    _write(folder / "train.arrow", batches, rows.sizes.tokens, np.concatenate(drawn.mixes))
    _write(folder / "eval.arrow", batches, rows.sizes.tokens, drawn.eval_ids)
    del readers, batches
    for p in paths:
        p.unlink()


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
        rows, drawn, estimates = _encode_sources(cfg, tokenizer, tmp, root, epochs, progress)
        _check_ratio(cfg, drawn)
        if not sum(len(m) for m in drawn.mixes):
            raise DataError("the mix is empty: no source row survived conversion and filtering "
                             f"({', '.join(f'{s.name}: {dict(s.dropped)}' for s in rows.stats)}).")
        _write_mix(tmp, rows, drawn)
        save_pools(tmp, rows.sizes.take(drawn.reasoning), Sizes.concat([rows.sizes.take(drawn.chat), estimates]))
        report = build_report(cfg, rows.stats, rows.offsets, rows.sizes, drawn.mixes, drawn.eval_ids, fp,
                              time.perf_counter() - started)
        (tmp / "report.json").write_text(json.dumps(report, indent=2))
    return _load(final, report, cached=False)
