"""How many reasoning and chat rows go into the mix, so that chat is `ratio` of it by rows or by tokens.

Both pools are shuffled by the seed; the mix takes a prefix of each. By rows it follows the reference recipe's
arithmetic, n_chat = int(n_reasoning * r / (1 - r)); by tokens it takes the chat prefix whose trained (labelled)
token count is closest to r / (1 - r) of the reasoning rows' trained tokens: the share of the training signal, since
prompt tokens carry no loss. If chat runs short, or a cap (max_rows, max_tokens: all tokens, the compute) binds,
fewer reasoning rows are taken so that the ratio still holds: the largest mix that satisfies everything.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kit.config.schema import DataConfig


@dataclass
class Sizes:
    """Token counts of a pool's rows, in pool order."""

    tokens: np.ndarray  # every token of each row: what max_tokens caps
    trained: np.ndarray  # its labelled tokens: what a ratio by tokens balances

    def take(self, ids: np.ndarray) -> Sizes:
        return Sizes(self.tokens[ids], self.trained[ids])

    @staticmethod
    def concat(parts: list[Sizes]) -> Sizes:
        return Sizes(np.concatenate([p.tokens for p in parts] or [np.zeros(0, np.int64)]).astype(np.int64),
                     np.concatenate([p.trained for p in parts] or [np.zeros(0, np.int64)]).astype(np.int64))


def _chat_rows_needed(k: int, ratio: float, by: str, reason_cum: np.ndarray, chat_cum: np.ndarray) -> int:
    if by == "rows":
        return int(k * ratio / (1 - ratio))
    target = reason_cum[k] * ratio / (1 - ratio)
    m = int(np.searchsorted(chat_cum, target))  # first m with chat_cum[m] >= target
    if m == len(chat_cum):
        return m  # more chat than there is: this many reasoning rows cannot keep the ratio
    if m > 0 and target - chat_cum[m - 1] <= chat_cum[m] - target:
        m -= 1
    return m


def _cum(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


def choose_counts(reasoning: Sizes, chat: Sizes, ratio: float, by: str, max_rows: int = 0,
                  max_tokens: int = 0) -> tuple[int, int]:
    """Rows to take from the front of each (already shuffled) pool: `(n_reasoning, n_chat)`."""
    reason_cum, chat_cum = _cum(reasoning.tokens), _cum(chat.tokens)
    reason_trained, chat_trained = _cum(reasoning.trained), _cum(chat.trained)

    def fits(k: int, m: int) -> bool:
        return (m <= len(chat.tokens) and k <= len(reasoning.tokens) and (not max_rows or k + m <= max_rows)
                and (not max_tokens or reason_cum[k] + chat_cum[m] <= max_tokens))

    def chat_rows(k: int) -> int:
        return _chat_rows_needed(k, ratio, by, reason_trained, chat_trained)

    if ratio >= 1 or ratio <= 0:  # one side only: take as much of it as the caps allow
        cum, n = (chat_cum, len(chat.tokens)) if ratio >= 1 else (reason_cum, len(reasoning.tokens))
        take = n
        if max_rows:
            take = min(take, max_rows)
        if max_tokens:
            take = min(take, int(np.searchsorted(cum, max_tokens, side="right")) - 1)
        return (0, take) if ratio >= 1 else (take, 0)

    lo, hi = 0, len(reasoning.tokens)  # the need for chat grows with k, so the feasible k form a prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid, chat_rows(mid)):
            lo = mid
        else:
            hi = mid - 1
    return lo, chat_rows(lo)


def split_eval(n_reason: int, n_chat: int, eval_rows: int, ratio: float) -> tuple[int, int]:
    """Eval rows to hold out of each pool, in the mix's proportion by rows (at least one of each where possible)."""
    if eval_rows <= 0:
        return 0, 0
    chat = min(n_chat, round(eval_rows * ratio))
    reason = min(n_reason, eval_rows - chat)
    if 0 < ratio < 1 and chat == 0 and n_chat > 1 and eval_rows > 1:
        chat, reason = 1, min(n_reason, eval_rows - 1)
    # Never hold out a whole pool: training needs rows of each side the ratio asks for.
    return min(reason, max(n_reason - 1, 0)), min(chat, max(n_chat - 1, 0))


def chat_short(reasoning: Sizes, chat: Sizes, n_r: int, ratio: float, by: str) -> bool:
    """Would one more reasoning row than `n_r` need more chat than the pool has? Then chat bounds the mix. (Not
    "every chat row was taken": by rows above 0.5 a reasoning row needs several chat rows, so some can be left.)"""
    if not 0 < ratio < 1 or n_r >= len(reasoning.tokens):
        return False
    return _chat_rows_needed(n_r + 1, ratio, by, _cum(reasoning.trained), _cum(chat.trained)) > len(chat.tokens)


def _capped(d: DataConfig, reasoning: Sizes, chat: Sizes, n_r: int, n_c: int) -> bool:
    """Would one more reasoning row break data.max_rows or data.max_tokens? Then a cap, not chat, bounds the mix."""
    if n_r >= len(reasoning.tokens):
        return True
    tokens = int(reasoning.tokens[:n_r + 1].sum() + chat.tokens[:n_c].sum())
    return bool((d.max_rows and n_r + 1 + n_c > d.max_rows) or (d.max_tokens and tokens > d.max_tokens))


@dataclass
class Draw:
    mixes: list[np.ndarray]  # the row ids of each epoch's mix, in training order
    eval_ids: np.ndarray  # held out of every epoch
    reasoning: np.ndarray  # the shuffled pools less the eval rows (chat: epoch 0's): what other ratios draw from
    chat: np.ndarray
    exhausted: bool  # in some epoch chat ran out before reasoning did (`chat_short`)
    left_out: int = 0  # reasoning rows an epoch left out because chat ran out (not a cap): the ratio's shortfall


def draw(d: DataConfig, reasoning_ids: np.ndarray, chat_ids: np.ndarray, sizes: Sizes, epochs: int) -> Draw:
    """Shuffle each pool by the seed, hold the eval rows out, and take each epoch's mix from the fronts (with
    `redraw_chat_each_epoch`, epoch e shuffles chat by seed + e). `sizes` are indexed by row id."""

    def shuffled(ids: np.ndarray, seed: int) -> np.ndarray:
        return ids[np.random.default_rng(seed).permutation(len(ids))]

    reasoning, chat = shuffled(reasoning_ids, d.seed), shuffled(chat_ids, d.seed)
    eval_r, eval_c = split_eval(len(reasoning), len(chat), d.eval_rows, d.chat_ratio)
    held = chat[len(chat) - eval_c:]
    out = Draw([], np.concatenate([reasoning[len(reasoning) - eval_r:], held]), reasoning[:len(reasoning) - eval_r],
               chat[:len(chat) - eval_c], False)
    for epoch in range(epochs):
        chat = out.chat if epoch == 0 else shuffled(chat_ids, d.seed + epoch)
        chat = chat[~np.isin(chat, held)]
        n_r, n_c = choose_counts(sizes.take(out.reasoning), sizes.take(chat), d.chat_ratio, d.ratio_by,
                                 d.max_rows, d.max_tokens)
        short = chat_short(sizes.take(out.reasoning), sizes.take(chat), n_r, d.chat_ratio, d.ratio_by)
        out.exhausted |= short
        if short and not _capped(d, sizes.take(out.reasoning), sizes.take(chat), n_r, n_c):
            out.left_out = max(out.left_out, len(out.reasoning) - n_r)
        mix = np.concatenate([out.reasoning[:n_r], chat[:n_c]])
        out.mixes.append(mix[np.random.default_rng(d.seed + epoch).permutation(len(mix))])
    return out
