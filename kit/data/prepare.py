"""The data pipeline: sources -> conversations -> the chat template -> tokens and labels -> the mix, on `datasets`.

    prepared = prepare_data(cfg, tokenizer)       # kit.data.prepare_data

Rows stream into a `Dataset` on disk, so memory stays flat however large a source. The result is found again under
one fingerprint of everything that shapes it (config, tokenizer, source files), where datasets' own cache would
re-read every source to fingerprint each step; it is renamed into place only when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kit.data.formats import DataError
from kit.data.mix import Draw, Sizes, draw
from kit.data.sources import Counts, conversations, mix_sources, source_identity
from kit.files import atomic_folder, writing_into
from kit.paths import shown

FORMAT_VERSION = 8  # bump when the prepared files' layout, labelling, mix or report changes
# A shared source is tokenized only as far as the mix needs, estimated from its characters: this much more than the
# estimate, and these rows more (on a small mix 15 % is a handful of rows, too few to absorb the drops), and only if
# that leaves out more than 10 % of it (else the second pass that a subset too small costs outweighs the saving).
MARGIN, SPARE_ROWS, SELECT_BELOW = 1.15, 64, 0.9
PARALLEL_FROM = 2048  # rows; below this a pool of processes costs more than it saves
# cores: up to two, one process keeps them busy (the tokenizer's threads, and the rendering beside them), where forked
# workers lose those threads: 1.15x the limit against 1.99x on 2 cores (docs/benchmarks.md)
IN_PROCESS_UP_TO = 2
WRITE_BATCH = 1000  # converted rows held before they are written
EVAL_SHARE_SAID = 0.2  # an eval split holding out more of a source than this is said
DROPS_SAID = 0.5  # a source losing more of its rows than this to bad rows or the length limit is said


@dataclass
class Prepared:
    """The prepared mix: memory-mapped `datasets.Dataset`s (input_ids, labels, source) plus the data report."""

    train: object
    eval: object | None
    report: dict
    path: Path
    cached: bool


@dataclass
class Pool:
    """One source: its conversations on disk, the rows encoded so far (and what their encoding dropped)."""

    name: str
    src: object
    counts: Counts
    converted: object  # Dataset: conversation (JSON), chars, trained_chars; None for a cached pool
    parts: list = field(default_factory=list)  # encoded Datasets (input_ids, labels, source, tokens, trained, dropped)
    encoded: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # converted rows encoded so far
    sizes: Sizes = field(default_factory=lambda: Sizes.concat([]))  # of the kept encoded rows, in order
    length_drops: Counter = field(default_factory=Counter)

    @property
    def whole(self) -> bool:
        return self.src.share is None

    @property
    def drops(self) -> Counter:
        """Rows dropped, by reason: in conversion and filtering, then by the length limit."""
        return self.counts.dropped + self.length_drops

    @property
    def where(self) -> str:
        return f"source '{self.name}' ({shown(self.src.path)})"

    def chars(self, name: str = "chars") -> np.ndarray:
        """Each converted row's size in characters: `chars` (all content) or `trained_chars`."""
        return column(self.converted, name)


def tokenizer_fingerprint(tokenizer) -> str:
    h = hashlib.sha256(str(tokenizer.chat_template).encode())
    h.update(tokenizer.backend_tokenizer.to_str().encode())
    return h.hexdigest()


def _hash(tree: dict) -> str:
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint(cfg, tokenizer, epochs: int, cache_dir: Path) -> str:
    data = asdict(cfg.data)
    data.pop("num_proc")
    return _hash({"version": FORMAT_VERSION, "data": data, "max_seq_length": cfg.model.max_seq_length,
                  "epochs": epochs, "tokenizer": tokenizer_fingerprint(tokenizer),
                  "sources": [source_identity(src, cache_dir) for _, src in mix_sources(cfg.data)]})


def column(dataset, name: str) -> np.ndarray:
    """A column as one array, read as an Arrow column: `np.asarray(dataset[name])` formats it a row at a time, which
    cost more than the tokenizer's own time on a 10,000-row chat source."""
    return dataset.with_format("arrow")[name].to_numpy(zero_copy_only=False)


def _converted(name: str, src, cfg, root: Path, work: Path):
    """A source's valid conversations as a Dataset on disk (JSON text and sizes in characters), and its counts:
    written a batch at a time by datasets' ArrowWriter (`Dataset.from_generator` encodes each row on its own)."""
    from datasets import Dataset, Features, Value
    from datasets.arrow_writer import ArrowWriter

    from kit.data.template import content_chars

    counts = Counts(name, src.role, src.path)
    features = Features({"conversation": Value("string"), "chars": Value("int64"), "trained_chars": Value("int64")})
    path = work / "convert" / f"{name}.arrow"
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {column: [] for column in features}
    with ArrowWriter(features=features, path=str(path)) as writer:
        for conversation in conversations(name, src, counts, cfg.data.on_bad_row, root / "datasets"):
            chars, trained = content_chars(conversation, cfg.data.train_turns)
            batch["conversation"].append(json.dumps(conversation, ensure_ascii=False))
            batch["chars"].append(chars)
            batch["trained_chars"].append(trained)
            if len(batch["chars"]) == WRITE_BATCH:
                writer.write_batch(batch)
                batch = {column: [] for column in features}
        if batch["chars"]:
            writer.write_batch(batch)
        writer.finalize()
    return counts, Dataset.from_file(str(path))


def _encode(pool: Pool, rows: np.ndarray, cfg, tokenizer, work: Path, progress: bool) -> None:
    """Encode the converted rows `rows` of a pool on every core, and append what they give."""
    from datasets import Dataset, Features, Sequence, Value

    from kit.data.template import encoder

    procs = cfg.data.num_proc or os.cpu_count() or 1
    features = Features({"input_ids": Sequence(Value("int32")), "labels": Sequence(Value("int32")),
                         "source": Value("string"), "tokens": Value("int64"), "trained": Value("int64"),
                         "dropped": Value("string")})
    if len(rows):
        part = pool.converted.select(rows).map(
            encoder(tokenizer, cfg.data, cfg.model.max_seq_length, pool.name), batched=True, batch_size=256,
            num_proc=procs if len(rows) >= PARALLEL_FROM and procs > IN_PROCESS_UP_TO else None, features=features,
            remove_columns=pool.converted.column_names,
            cache_file_name=str(work / f"{pool.name}-{len(pool.parts)}.arrow"),
            new_fingerprint=_hash({"pool": pool.name, "part": len(pool.parts)}),
            desc=f"tokenizing {pool.name}" if progress else None)
    else:  # datasets maps no rows to a table without columns: an empty part keeps the schema
        part = Dataset.from_dict({k: [] for k in features}, features=features)
    dropped = column(part, "dropped")
    kept = np.flatnonzero(dropped == "")
    pool.length_drops.update(dropped[dropped != ""].tolist())
    pool.parts.append(part.select(kept).select_columns(["input_ids", "labels", "source"]))
    pool.sizes = Sizes.concat([pool.sizes, Sizes(column(part, "tokens")[kept], column(part, "trained")[kept])])
    pool.encoded = np.concatenate([pool.encoded, rows])


def _subset(pool: Pool, need: float, cfg) -> np.ndarray:
    """The rows of a shared pool worth tokenizing: a seeded subset large enough for `need` (from characters), or all."""
    n = len(pool.converted)
    order = np.random.default_rng(cfg.data.seed).permutation(n)
    if cfg.data.ratio_by == "rows":
        take = int(need * MARGIN)
    else:
        trained = pool.chars("trained_chars")[order]
        take = int(np.searchsorted(np.cumsum(trained), need * MARGIN)) + 1
    take += cfg.data.eval_rows + SPARE_ROWS
    return np.sort(order[:take]) if take < SELECT_BELOW * n else np.arange(n)


def _pools(cfg, tokenizer, root: Path, work: Path, epochs: int, progress: bool) -> list[Pool]:
    """Every source converted, the whole ones encoded in full, the shared ones as far as the mix needs."""
    pools = [_cached_pool(name, src, cfg, tokenizer, root, progress) if cfg.data.cache_pools else
             Pool(name, src, *_converted(name, src, cfg, root, work)) for name, src in mix_sources(cfg.data)]
    whole = [p for p in pools if p.whole]
    for pool in (p for p in whole if not p.parts):
        _encode(pool, np.arange(len(pool.converted)), cfg, tokenizer, work, progress)
    rest = 1 - sum(p.src.share for p in pools if not p.whole)
    for pool in (p for p in pools if not p.parts):
        rows = np.arange(len(pool.converted))
        if whole:  # sized by the whole sources: in rows, or in trained tokens at the chars they cost there
            need = sum(len(p.sizes.tokens) for p in whole) if cfg.data.ratio_by == "rows" else \
                sum(int(p.sizes.trained.sum()) for p in whole) / _trained_per_char(whole)
            rows = _subset(pool, need * pool.src.share / rest * epochs, cfg)
        _encode(pool, rows, cfg, tokenizer, work, progress)
    return pools


def _cached_pool(name: str, src, cfg, tokenizer, root: Path, progress: bool) -> Pool:
    """With data.cache_pools (the sweep's), a source encoded in full once and cached by all that shapes it but its
    share."""
    from datasets import concatenate_datasets, load_from_disk

    d, whole = cfg.data, {k: v for k, v in asdict(src).items() if k != "share"}
    folder = root / "pools" / _hash({
        "version": FORMAT_VERSION, "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_seq_length": cfg.model.max_seq_length, "overlong": d.overlong, "train_turns": d.train_turns,
        "train_empty_think": d.train_empty_think, "on_bad_row": d.on_bad_row, "name": name, "source": whole,
        "content": source_identity(src, root / "datasets")})
    if not (folder / "pool.json").is_file():
        with atomic_folder(folder) as tmp:
            pool = Pool(name, src, *_converted(name, src, cfg, root, tmp / "work"))
            _encode(pool, np.arange(len(pool.converted)), cfg, tokenizer, tmp / "work", progress)
            concatenate_datasets(pool.parts).save_to_disk(str(tmp / "rows"))
            np.savez(tmp / "sizes.npz", tokens=pool.sizes.tokens, trained=pool.sizes.trained)
            (tmp / "pool.json").write_text(json.dumps(vars(pool.counts) | {"length_drops": pool.length_drops}))
            shutil.rmtree(tmp / "work")
    saved, sizes = json.loads((folder / "pool.json").read_text()), np.load(folder / "sizes.npz")
    drops = Counter(saved.pop("length_drops"))
    counts = Counts(**saved | {"dropped": Counter(saved["dropped"])})
    return Pool(name, src, counts, None, [load_from_disk(str(folder / "rows"))], np.arange(counts.valid),
                Sizes(sizes["tokens"], sizes["trained"]), drops)


def _trained_per_char(pools: list[Pool]) -> float:
    chars = sum(int(p.chars("trained_chars")[p.encoded].sum()) for p in pools)
    return sum(int(p.sizes.trained.sum()) for p in pools) / max(1, chars)


def _draw(cfg, pools: list[Pool], epochs: int) -> tuple[Draw, np.ndarray]:
    """The mix's row ids (every pool's kept rows laid end to end), and each row id's offset table."""
    offsets = np.cumsum([0] + [len(p.sizes.tokens) for p in pools])
    ids = [np.arange(offsets[i], offsets[i + 1]) for i in range(len(pools))]
    d = cfg.data
    drawn = draw(ids, [p.src.share for p in pools], Sizes.concat([p.sizes for p in pools]), by=d.ratio_by, seed=d.seed,
                 eval_rows=d.eval_rows, epochs=epochs, redraw=d.redraw_each_epoch, max_rows=d.max_rows,
                 max_tokens=d.max_tokens)
    return drawn, offsets


def _drops(pool: Pool) -> str:
    """Why a source's rows were dropped, as the report counts them: `10 unknown_role, 2 too_long`."""
    return ", ".join(f"{n} {why}" for why, n in sorted(pool.drops.items()))


FIXES = {  # a drop's reason -> what keeps such rows
    "too_long": "a higher model.max_seq_length (or data.overlong=truncate) keeps the too_long rows",
    "nothing_to_train_after_truncation": "a higher model.max_seq_length keeps the answers truncation cut off",
    "nothing_to_train": "kit.show_row shows how a row is labelled (docs/data.md)",
}


def _fixes(reasons) -> str:
    """What to change for each kind of drop among `reasons`."""
    said = [FIXES[why] for why in sorted(reasons) if why in FIXES]
    if any(why.startswith("filtered") for why in reasons):
        said.append("filtered_* rows are the source's filters at work")
    if any(why not in FIXES and not why.startswith("filtered") for why in reasons):
        said.append("data.on_bad_row=error names the first bad row")
    return "; ".join(said)


class Shortfall(DataError):
    """A shared source too short for its share, unless data.allow_shortfall: a matter of the shares, not the data."""


def _check_usable(pools: list[Pool]) -> None:
    """Every source keeps a row after conversion, filters and the length limit."""
    for pool in pools:
        if not len(pool.sizes.tokens):
            raise DataError(f"{pool.where} has no usable row: of the {pool.counts.read} read, dropped "
                            f"{_drops(pool)}; {_fixes(pool.drops)}.")


def _check_shares(cfg, pools: list[Pool], drawn: Draw) -> list[str]:
    """A shared source that runs out bounds the whole mix: keeping its share leaves rows of the whole sources out.
    That stops with the numbers, or goes on with a warning (returned). With every source shared, the first to run
    out bounds the mix by design: said, with what the first source gives."""
    shared = [p for p in pools if not p.whole]
    if not drawn.left_out:
        if len(shared) < len(pools) or not drawn.shortest:
            return []
        short, used = shared[drawn.shortest], int(np.isin(drawn.pools[0], drawn.mixes[0]).sum())
        return [f"{short.name}'s {len(short.sizes.tokens)} usable rows at its share {short.src.share} bound the mix "
                f"at {len(drawn.mixes[0])} rows, so {shared[0].name} gives {used} of its {len(drawn.pools[0])}; add "
                f"{short.name} rows or lower its share to use more."]
    # the draw's pool 0 is the whole sources together, or (without any) the first shared source
    short = shared[drawn.shortest - (len(shared) < len(pools))]
    whole = len(drawn.pools[0])  # the driving rows, less their eval rows
    d, kept = cfg.data, whole - drawn.left_out
    asked = f"data.chat_ratio={d.chat_ratio}" if short.name == "chat" else f"its share {short.src.share}"
    found = (f"{short.name} runs short: its {len(short.sizes.tokens)} usable rows keep {asked} by {d.ratio_by} only "
             f"with {kept} of the {whole} rows of {', '.join(p.name for p in pools if p.whole)}")
    if not d.allow_shortfall:
        raise Shortfall(f"{found}; add {short.name} data, lower its share, cap data.max_rows, or set "
                        "data.allow_shortfall=true to train on the smaller mix.")
    return [f"{found}; data.allow_shortfall=true, so the smaller mix is used."]


def _check_rows(cfg, pools: list[Pool], drawn: Draw, offsets: np.ndarray) -> list[str]:
    """The eval split leaves more rows to train on than it holds out, and every source gives the mix rows; the
    warnings: an eval split that holds out much of a source."""
    def per_pool(ids: np.ndarray) -> np.ndarray:
        return np.bincount(np.searchsorted(offsets, ids, side="right") - 1, minlength=len(pools))

    held_out, rows = len(drawn.eval_ids), sum(len(p.sizes.tokens) for p in pools)
    if held_out > rows - held_out:
        raise DataError(f"the eval split (data.eval_rows={cfg.data.eval_rows}) holds out {held_out} of the sources' "
                        f"{rows} usable rows, leaving {rows - held_out} to train on; lower data.eval_rows or add rows.")
    warnings = []
    for pool, trained, held in zip(pools, per_pool(np.concatenate(drawn.mixes)), per_pool(drawn.eval_ids),
                                   strict=True):
        usable, where = len(pool.sizes.tokens), pool.where
        if not trained:  # every source has usable rows (_check_usable)
            if pool.src.share is not None:
                why = f"its share {pool.src.share} of the mix rounds to 0 rows; raise its share, or give it no share " \
                    "to train all its rows"
            else:
                why = "data.max_rows, data.max_tokens or a shared source that runs short (data.allow_shortfall) " \
                    "leaves none of them; raise the cap or lower the shares"
            raise DataError(f"{where} gives the mix no row of its {pool.counts.valid}: {why}.")
        lost = {why: n for why, n in pool.drops.items() if not why.startswith("filtered")}  # filters' drops are asked
        if sum(lost.values()) > DROPS_SAID * pool.counts.read:
            warnings.append(f"{where}: {sum(lost.values())} of its {pool.counts.read} rows were dropped "
                            f"({_drops(pool)}); {_fixes(lost)}.")
        if held > EVAL_SHARE_SAID * usable:
            warnings.append(f"{where}: the eval split holds out {held} of its {usable} usable rows, leaving "
                            f"{usable - held} to train on; lower data.eval_rows or add rows.")
    return warnings


def _write(folder: Path, pools: list[Pool], drawn: Draw) -> None:
    """train/ and eval/ (input_ids, labels, source) gathered from the pools, a bounded batch at a time."""
    from datasets import concatenate_datasets

    rows = concatenate_datasets([part for p in pools for part in p.parts])
    rows.select(np.concatenate(drawn.mixes)).save_to_disk(str(folder / "train"))
    rows.select(drawn.eval_ids).save_to_disk(str(folder / "eval"))


def _load(path: Path, report: dict, cached: bool) -> Prepared:
    """The prepared mix, its warnings said each time it is used (a reused mix keeps them: they still hold)."""
    from datasets import load_from_disk

    for warning in report["warnings"]:
        print(f"warning: {warning}")
    return Prepared(load_from_disk(str(path / "train")),
                    load_from_disk(str(path / "eval")) if report["mix"]["eval_rows"] else None, report, path, cached)


def prepare_data(cfg, tokenizer, *, cache_dir: str | Path | None = None, epochs: int = 1,
                 progress: bool = True) -> Prepared:
    """Build (or reuse) the tokenized, labelled mix that `cfg.data` describes.

    Args:
        cfg: the resolved config (data, model.max_seq_length).
        tokenizer: a fast tokenizer whose chat template defines the format.
        cache_dir: where prepared sets and hub downloads live (default: the kit's cache root).
        epochs: with `data.redraw_each_epoch`, one mix per epoch, each with a fresh draw of the shared sources.
    Returns:
        `Prepared` with `train`/`eval` datasets (columns input_ids, labels, source) and the report.
    Raises:
        DataError (BadRow) naming source, file, row and field for bad input when `data.on_bad_row` is error;
        Shortfall when a shared source cannot keep its share.
    """
    import datasets

    from kit.data.report import build_report, save_pools
    from kit.paths import cache_root

    root = Path(cache_dir) if cache_dir else cache_root(cfg.model.cache_dir)
    epochs = epochs if cfg.data.redraw_each_epoch else 1
    fp = fingerprint(cfg, tokenizer, epochs, root / "datasets")
    final = root / "prepared" / fp
    if (final / "report.json").is_file():
        return _load(final, json.loads((final / "report.json").read_text()), cached=True)
    started, bars = time.perf_counter(), datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()  # the kit's own bars say what is happening; datasets' would say it twice
    try:
        with writing_into(root), atomic_folder(final) as tmp:
            work = tmp / "work"
            pools = _pools(cfg, tokenizer, root, work, epochs, progress)
            drawn, offsets = _draw(cfg, pools, epochs)
            if drawn.exhausted and any(p.converted is not None and len(p.encoded) < len(p.converted) for p in pools):
                for pool in (p for p in pools if p.converted is not None):  # the subset was too small for the mix:
                    rest = np.setdiff1d(np.arange(len(pool.converted)), pool.encoded)  # tokenize the rest, draw again
                    if len(rest):
                        _encode(pool, rest, cfg, tokenizer, work, progress)
                drawn, offsets = _draw(cfg, pools, epochs)
            _check_usable(pools)
            warnings = _check_shares(cfg, pools, drawn) + _check_rows(cfg, pools, drawn, offsets)
            _write(tmp, pools, drawn)
            save_pools(tmp, pools, drawn)
            report = build_report(cfg, pools, offsets, drawn, fp, time.perf_counter() - started, warnings)
            (tmp / "report.json").write_text(json.dumps(report, indent=2))
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if bars:
            datasets.enable_progress_bars()
    return _load(final, report, cached=False)
