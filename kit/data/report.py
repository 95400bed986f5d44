"""What a prepared mix holds: the data report and its table, the mix at other ratios, and padding waste.

Three counts of size, since they answer different questions: rows (the reference recipe's ratio), all tokens (the
compute a step costs) and trained tokens (the labelled ones: the share of the training signal, what
`ratio_by: tokens` balances).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from kit.config import Config
from kit.data.mix import Sizes, choose_counts
from kit.data.pools import SourceStats

POOLS_FILE = "pools.npz"  # the shuffled pools' token counts, beside the prepared set, for `ratio_sweep`


def save_pools(folder: Path, reasoning: Sizes, chat: Sizes) -> None:
    np.savez(folder / POOLS_FILE, reasoning_tokens=reasoning.tokens, reasoning_trained=reasoning.trained,
             chat_tokens=chat.tokens, chat_trained=chat.trained)


def _percentiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    p = np.percentile(values, [50, 90, 99])
    return {"p50": int(p[0]), "p90": int(p[1]), "p99": int(p[2]), "max": int(values.max())}


def _counts(sizes: Sizes, rows: np.ndarray) -> dict:
    """Rows, tokens and trained tokens of the rows with these ids."""
    return {"rows": len(rows), "tokens": int(sizes.tokens[rows].sum()),
            "trained_tokens": int(sizes.trained[rows].sum())}


def _shares(chat: dict, reasoning: dict) -> dict:
    return {f"chat_share_{k}": round(chat[k] / (chat[k] + reasoning[k]), 6) if chat[k] + reasoning[k] else 0.0
            for k in chat}


def build_report(cfg: Config, stats: list[SourceStats], offsets: np.ndarray, sizes: Sizes, mixes: list[np.ndarray],
                 eval_ids: np.ndarray, fp: str, seconds: float) -> dict:
    """The data report: per source rows, tokens and drops; for the mix, the chat share by each count.
    Row ids are global: the sources' pools laid end to end (`offsets`), `sizes` their token counts."""
    train = np.concatenate(mixes)
    sources, totals = {}, {"reasoning": Counter(), "chat": Counter()}
    for i, s in enumerate(stats):
        rows = train[(train >= offsets[i]) & (train < offsets[i + 1])]
        used = _counts(sizes, rows)
        sources[s.name] = {
            "role": s.role, "path": s.path, "rows_read": s.rows_read, "rows_valid": s.rows_valid,
            "rows_kept": len(s.tokens), "rows_used": used["rows"], "tokens_used": used["tokens"],
            "trained_tokens_used": used["trained_tokens"],
            "eval_rows": int(((eval_ids >= offsets[i]) & (eval_ids < offsets[i + 1])).sum()),
            "dropped": dict(sorted(s.dropped.items())), "length": _percentiles(sizes.tokens[rows]),
        }
        totals[s.role].update(used)
    chat, reasoning = ({k: totals[role][k] for k in ("rows", "tokens", "trained_tokens")}
                       for role in ("chat", "reasoning"))
    d = cfg.data
    return {
        "fingerprint": fp,
        "asked": {"chat_ratio": d.chat_ratio, "ratio_by": d.ratio_by, "seed": d.seed, "max_rows": d.max_rows,
                  "max_tokens": d.max_tokens, "max_seq_length": cfg.model.max_seq_length, "overlong": d.overlong},
        "sources": sources,
        "mix": {"train_rows": chat["rows"] + reasoning["rows"], "train_tokens": chat["tokens"] + reasoning["tokens"],
                "train_trained_tokens": chat["trained_tokens"] + reasoning["trained_tokens"],
                "eval_rows": int(len(eval_ids)), "epochs": len(mixes),
                "chat_rows": chat["rows"], "reasoning_rows": reasoning["rows"], **_shares(chat, reasoning)},
        "seconds": round(seconds, 2),
    }


def format_report(report: dict) -> str:
    """The data report as a printed table."""
    head = (f"{'source':<22}{'role':<10}{'read':>9}{'valid':>9}{'tokenized':>10}{'used':>9}{'tokens':>12}"
            f"{'trained':>12}{'p50':>7}{'p90':>7}{'max':>7}")
    lines = [head, "-" * len(head)]
    for name, s in report["sources"].items():
        length = s["length"] or {"p50": 0, "p90": 0, "max": 0}
        lines.append(f"{name[:21]:<22}{s['role']:<10}{s['rows_read']:>9}{s['rows_valid']:>9}{s['rows_kept']:>10}"
                     f"{s['rows_used']:>9}{s['tokens_used']:>12}{s['trained_tokens_used']:>12}"
                     f"{length['p50']:>7}{length['p90']:>7}{length['max']:>7}")
        for reason, n in s["dropped"].items():
            lines.append(f"{'':<24}dropped {reason}: {n}")
    m, a = report["mix"], report["asked"]
    lines.append("-" * len(head))
    lines.append(f"mix: {m['train_rows']} train rows ({m['train_tokens']} tokens, {m['train_trained_tokens']} "
                 f"trained), {m['eval_rows']} eval rows, {m['epochs']} epoch mix(es)")
    asked = "rows" if a["ratio_by"] == "rows" else "trained tokens"
    lines.append(f"chat share: {m['chat_share_rows']:.2%} of rows, {m['chat_share_tokens']:.2%} of tokens, "
                 f"{m['chat_share_trained_tokens']:.2%} of trained tokens (asked {a['chat_ratio']:.2%} of {asked})")
    return "\n".join(lines)


def ratio_sweep(prepared, ratios: list[float], by: str = "rows") -> list[dict]:
    """What the mix would hold at other chat ratios, from the prepared pools' token counts (no re-tokenizing).

    Args:
        prepared: a `Prepared` from `prepare_data`.
        ratios: chat ratios to try; `by`: rows | tokens (trained tokens), as `data.ratio_by`.
    Returns:
        One dict per ratio: reasoning/chat rows, tokens and trained tokens, and the chat share by each.
        Chat rows that were never tokenized count with their length estimated from their characters.
    """
    pools = np.load(Path(prepared.path) / POOLS_FILE)
    reasoning = Sizes(pools["reasoning_tokens"], pools["reasoning_trained"])
    chat = Sizes(pools["chat_tokens"], pools["chat_trained"])
    out = []
    for ratio in ratios:
        n_r, n_c = choose_counts(reasoning, chat, ratio, by)
        r, c = _counts(reasoning, np.arange(n_r)), _counts(chat, np.arange(n_c))
        out.append({"chat_ratio": ratio, "by": by, **{f"reasoning_{k}": n for k, n in r.items()},
                    **{f"chat_{k}": n for k, n in c.items()}, **_shares(c, r)})
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
