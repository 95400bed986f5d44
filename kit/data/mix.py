"""How many reasoning and chat rows go into the mix, so that chat is `ratio` of it by rows or by tokens.

Both pools are shuffled by the seed; the mix takes a prefix of each. By rows it follows the reference recipe's
arithmetic, n_chat = int(n_reasoning * r / (1 - r)); by tokens it takes the chat prefix whose token count is
closest to r / (1 - r) of the reasoning tokens. If chat runs short, or a cap (max_rows, max_tokens) binds, fewer
reasoning rows are taken so that the ratio still holds: the largest mix that satisfies everything.
"""

from __future__ import annotations

import numpy as np


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


def choose_counts(reason_tokens: np.ndarray, chat_tokens: np.ndarray, ratio: float, by: str,
                  max_rows: int = 0, max_tokens: int = 0) -> tuple[int, int]:
    """Rows to take from the front of each (already shuffled) pool: `(n_reasoning, n_chat)`.

    `reason_tokens` and `chat_tokens` are the rows' token counts in pool order.
    """
    reason_cum = np.concatenate([[0], np.cumsum(reason_tokens, dtype=np.int64)])
    chat_cum = np.concatenate([[0], np.cumsum(chat_tokens, dtype=np.int64)])

    def fits(k: int, m: int) -> bool:
        return (m <= len(chat_tokens) and k <= len(reason_tokens) and (not max_rows or k + m <= max_rows)
                and (not max_tokens or reason_cum[k] + chat_cum[m] <= max_tokens))

    if ratio >= 1 or ratio <= 0:  # one side only: take as much of it as the caps allow
        cum, n = (chat_cum, len(chat_tokens)) if ratio >= 1 else (reason_cum, len(reason_tokens))
        take = n
        if max_rows:
            take = min(take, max_rows)
        if max_tokens:
            take = min(take, int(np.searchsorted(cum, max_tokens, side="right")) - 1)
        return (0, take) if ratio >= 1 else (take, 0)

    lo, hi = 0, len(reason_tokens)  # the need for chat grows with k, so the feasible k form a prefix
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid, _chat_rows_needed(mid, ratio, by, reason_cum, chat_cum)):
            lo = mid
        else:
            hi = mid - 1
    return lo, _chat_rows_needed(lo, ratio, by, reason_cum, chat_cum)


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
