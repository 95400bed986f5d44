"""What a prepared mix holds: the data report and its table, and the mix at other chat ratios.
Sizes in rows (the recipe's ratio), all tokens (the compute) and trained tokens (the signal); read = valid + dropped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit.data.mix import Sizes, counts

POOLS_FILE = "pools.npz"  # the shuffled whole and chat pools' token counts, beside the prepared set, for ratio_sweep


def _percentiles(values: np.ndarray) -> dict:
    if len(values) == 0:
        return {}
    p = np.percentile(values, [50, 90, 99])
    return {"p50": int(p[0]), "p90": int(p[1]), "p99": int(p[2]), "max": int(values.max())}


def _counts(sizes: Sizes) -> dict:
    return {"rows": len(sizes.tokens), "tokens": int(sizes.tokens.sum()), "trained_tokens": int(sizes.trained.sum())}


def _shares(part: dict, total: dict) -> dict:
    return {f"share_{k}": round(part[k] / total[k], 6) if total[k] else 0.0 for k in part}


def build_report(cfg, pools: list, offsets: np.ndarray, drawn, fp: str, seconds: float, warnings: list[str]) -> dict:
    """The data report: per source rows (read, kept, dropped by cause, used, eval), tokens and lengths; for the mix
    its totals and each source's share of them, and the chat share (the sources whose role is chat) by each count;
    the warnings its checks gave."""
    train = np.concatenate(drawn.mixes)
    sizes = Sizes.concat([p.sizes for p in pools])
    mix = _counts(sizes.take(train))
    sources, by_role = {}, {"chat": [], "reasoning": []}
    for i, p in enumerate(pools):
        ids = train[(train >= offsets[i]) & (train < offsets[i + 1])]
        used = _counts(sizes.take(ids))
        by_role.setdefault(p.counts.role, []).append(ids)
        sources[p.name] = {
            "role": p.counts.role, "path": p.src.path, "share": p.src.share, "rows_read": p.counts.read,
            "rows_valid": p.counts.valid - p.length_drops.total(), "rows_kept": len(p.sizes.tokens),
            "rows_untokenized": len(p.converted) - len(p.encoded) if p.converted is not None else 0,
            "rows_used": used["rows"], "tokens_used": used["tokens"], "trained_tokens_used": used["trained_tokens"],
            "eval_rows": int(((drawn.eval_ids >= offsets[i]) & (drawn.eval_ids < offsets[i + 1])).sum()),
            "dropped": dict(sorted(p.drops.items())),
            "length": _percentiles(sizes.tokens[ids]), **_shares(used, mix)}
    chat = _counts(sizes.take(np.concatenate(by_role["chat"] or [np.zeros(0, np.int64)])))
    d = cfg.data
    return {
        "fingerprint": fp,
        "asked": {"chat_ratio": d.chat_ratio, "ratio_by": d.ratio_by, "seed": d.seed, "max_rows": d.max_rows,
                  "max_tokens": d.max_tokens, "max_seq_length": cfg.model.max_seq_length, "overlong": d.overlong},
        "sources": sources,
        "mix": {"train_rows": mix["rows"], "train_tokens": mix["tokens"], "train_trained_tokens": mix["trained_tokens"],
                "eval_rows": len(drawn.eval_ids), "epochs": len(drawn.mixes), "chat_rows": chat["rows"],
                "reasoning_rows": mix["rows"] - chat["rows"],
                **{f"chat_{k}": v for k, v in _shares(chat, mix).items()}},
        "warnings": warnings,
        "seconds": round(seconds, 2),
    }


def format_report(report: dict) -> str:
    """The data report as a printed table."""
    head = (f"{'source':<22}{'role':<10}{'read':>9}{'kept':>9}{'used':>9}{'share':>8}{'tokens':>12}{'trained':>12}"
            f"{'p50':>7}{'p90':>7}{'max':>7}")
    lines = [head, "-" * len(head)]
    for name, s in report["sources"].items():
        length = s["length"] or {"p50": 0, "p90": 0, "max": 0}
        share = s["share_trained_tokens"] if report["asked"]["ratio_by"] == "tokens" else s["share_rows"]
        lines.append(f"{name[:21]:<22}{s['role']:<10}{s['rows_read']:>9}{s['rows_kept']:>9}{s['rows_used']:>9}"
                     f"{share:>8.1%}{s['tokens_used']:>12}{s['trained_tokens_used']:>12}{length['p50']:>7}"
                     f"{length['p90']:>7}{length['max']:>7}")
        lines += [f"{'':<24}dropped {reason}: {n}" for reason, n in s["dropped"].items()]
        if s["rows_untokenized"]:
            lines.append(f"{'':<24}not tokenized (the mix needs fewer): {s['rows_untokenized']}")
    m, a = report["mix"], report["asked"]
    lines += ["-" * len(head), f"mix: {m['train_rows']} train rows ({m['train_tokens']} tokens, "
              f"{m['train_trained_tokens']} trained), {m['eval_rows']} eval rows, {m['epochs']} epoch mix(es)"]
    if "chat" in report["sources"]:
        asked = "rows" if a["ratio_by"] == "rows" else "trained tokens"
        others = [n for n, s in report["sources"].items() if s["role"] == "chat" and n != "chat"]
        lines.append(f"chat share: {m['chat_share_rows']:.2%} of rows, {m['chat_share_tokens']:.2%} of tokens, "
                     f"{m['chat_share_trained_tokens']:.2%} of trained tokens (asked {a['chat_ratio']:.2%} of {asked}"
                     + (f" from chat; {', '.join(others)} {'add their' if len(others) > 1 else 'adds its'} own)"
                        if others else ")"))
    return "\n".join(lines)


def save_pools(folder: Path, pools: list, drawn) -> None:
    """The whole and chat pools' token counts in draw order, for `ratio_sweep` (untokenized rows estimated)."""
    sizes, empty = Sizes.concat([p.sizes for p in pools]), Sizes.concat([])
    whole = any(p.whole for p in pools)
    groups = ([sizes.take(drawn.pools[0])] if whole else []) + [sizes.take(g) for g in drawn.pools[int(whole):]]
    shared = [p for p in pools if not p.whole]
    chat = next((p for p in shared if p.name == "chat"), None)
    chat_sizes = groups[int(whole) + shared.index(chat)] if chat else empty
    if chat is not None and chat.converted is not None and len(chat.encoded) < len(chat.converted):
        left = np.setdiff1d(np.arange(len(chat.converted)), chat.encoded)
        chars = [chat.chars(c) for c in ("chars", "trained_chars")]
        estimated = [np.round(c[left] * s.sum() / max(1, c[chat.encoded].sum())).astype(np.int64)
                     for s, c in zip((chat.sizes.tokens, chat.sizes.trained), chars, strict=True)]
        chat_sizes = Sizes.concat([chat_sizes, Sizes(*estimated)])
    whole_sizes = groups[0] if whole else empty
    np.savez(folder / POOLS_FILE, whole_tokens=whole_sizes.tokens, whole_trained=whole_sizes.trained,
             chat_tokens=chat_sizes.tokens, chat_trained=chat_sizes.trained)


def ratio_sweep(prepared, ratios: list[float], by: str = "rows") -> list[dict]:
    """What the mix would hold at other chat ratios, from the prepared pools' token counts (no re-tokenizing).

    Args:
        prepared: a `Prepared` from `prepare_data`; `ratios`: chat ratios to try; `by`: rows | tokens.
    Returns:
        One dict per ratio: reasoning/chat rows, tokens and trained tokens, and the chat share by each.
    """
    pools = np.load(Path(prepared.path) / POOLS_FILE)
    whole, chat = (Sizes(pools[f"{k}_tokens"], pools[f"{k}_trained"]) for k in ("whole", "chat"))
    out = []
    for ratio in ratios:
        n_r, n_c = counts([whole, chat], [None, ratio], by) if 0 < ratio < 1 else \
            ((len(whole.tokens), 0) if ratio <= 0 else (0, len(chat.tokens)))
        r, c = _counts(whole.take(np.arange(n_r))), _counts(chat.take(np.arange(n_c)))
        total = {k: r[k] + c[k] for k in r}
        out.append({"chat_ratio": ratio, "by": by, **{f"reasoning_{k}": n for k, n in r.items()},
                    **{f"chat_{k}": n for k, n in c.items()}, **{f"chat_{k}": v for k, v in _shares(c, total).items()}})
    return out
