"""How many rows each source gives the mix, so that every source with a share is that share of it, by rows or by
trained tokens (docs/data.md), and the eval rows held out of every epoch. When a pool runs short or a cap binds,
fewer whole rows are taken so that every share still holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Sizes:
    """Token counts of a pool's rows, in pool order."""

    tokens: np.ndarray  # every token of each row: what max_tokens caps
    trained: np.ndarray  # its labelled tokens: what a share by tokens balances

    def take(self, ids: np.ndarray) -> Sizes:
        return Sizes(self.tokens[ids], self.trained[ids])

    @staticmethod
    def concat(parts: list[Sizes]) -> Sizes:
        zero = np.zeros(0, np.int64)
        return Sizes(np.concatenate([p.tokens for p in parts] or [zero]).astype(np.int64),
                     np.concatenate([p.trained for p in parts] or [zero]).astype(np.int64))


def _cum(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


class Plan:
    """The counts of a draw: pool 0 drives (`weight`: its share of the mix), each other pool has a `share`."""

    def __init__(self, pools: list[Sizes], shares: list[float], weight: float, by: str, max_rows: int,
                 max_tokens: int):
        self.pools, self.shares, self.weight, self.by = pools, shares, weight, by
        self.max_rows, self.max_tokens = max_rows, max_tokens
        self.cum = [_cum(p.tokens) for p in pools]
        self.cum_trained = [_cum(p.trained) for p in pools]

    def follow(self, k: int, i: int) -> int:
        """Rows of pool `i` (>= 1) that keep its share beside `k` rows of pool 0: by rows as the reference recipe
        counts (rounded down), by tokens the prefix whose trained tokens are closest to the target."""
        if self.by == "rows":
            return int(k * self.shares[i] / self.weight)
        cum, target = self.cum_trained[i], self.cum_trained[0][k] * self.shares[i] / self.weight
        m = int(np.searchsorted(cum, target))  # the first prefix reaching the target
        if m == len(cum):
            return m  # more than the pool holds: k rows of pool 0 cannot keep this share
        return m - 1 if m > 0 and target - cum[m - 1] <= cum[m] - target else m

    def counts(self, k: int) -> list[int]:
        return [k] + [self.follow(k, i) for i in range(1, len(self.pools))]

    def short(self, k: int) -> bool:
        """Would k rows of pool 0 need more rows of another pool than it has?"""
        return any(n > len(p.tokens) for n, p in zip(self.counts(k), self.pools, strict=True))

    def capped(self, k: int) -> bool:
        """Would k rows of pool 0 break data.max_rows or data.max_tokens?"""
        counts = self.counts(k)
        if self.short(k):
            return False
        tokens = sum(int(c[n]) for c, n in zip(self.cum, counts, strict=True))
        return bool((self.max_rows and sum(counts) > self.max_rows) or (self.max_tokens and tokens > self.max_tokens))

    def largest(self) -> list[int]:
        """The counts of the largest feasible mix: feasible k form a prefix (needs grow with k), found by bisection."""
        lo, hi = 0, len(self.pools[0].tokens)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if not (self.short(mid) or self.capped(mid)) else (lo, mid - 1)
        return self.counts(lo)

    def bound_by_a_share(self, k: int) -> bool:
        """Is pool 0 cut short at k rows because another pool ran out (not by a cap, nor by its own end)?"""
        return k < len(self.pools[0].tokens) and self.short(k + 1) and not self.capped(k + 1)


def split_eval(sizes: list[int], weights: list[float], eval_rows: int) -> list[int]:
    """Eval rows per pool in proportion to its weight (largest remainders, at least one where possible), never a
    whole pool."""
    if eval_rows <= 0:
        return [0] * len(sizes)
    exact = [eval_rows * w / sum(weights) for w in weights]
    out = [int(e) for e in exact]
    for i in sorted(range(len(out)), key=lambda i: out[i] - exact[i])[:eval_rows - sum(out)]:
        out[i] += 1
    out = [min(n, e) for n, e in zip(sizes, out, strict=True)]
    for i, n in enumerate(sizes if eval_rows >= len(sizes) else []):
        if out[i] == 0 and n > 1:  # one of this pool, in place of one of the largest share
            out[i], largest = 1, max(range(len(out)), key=out.__getitem__)
            out[largest] -= 1
    return [min(e, max(n - 1, 0)) for e, n in zip(out, sizes, strict=True)]


def counts(pools: list[Sizes], shares: list[float | None], by: str, max_rows: int = 0,
           max_tokens: int = 0) -> list[int]:
    """Rows to take from the front of each (already shuffled) pool: `shares[0]` None for the whole pool (all of it,
    caps allowing), each other share a fraction of the mix; without a whole pool the shares add up to 1."""
    weights = [1 - sum(s for s in shares if s is not None) if s is None else s for s in shares]
    return Plan(pools, weights, weights[0], by, max_rows, max_tokens).largest()


@dataclass
class Draw:
    mixes: list[np.ndarray]  # the row ids of each epoch's mix, in training order
    eval_ids: np.ndarray  # held out of every epoch
    pools: list[np.ndarray]  # each shuffled pool less its eval rows (shared ones: epoch 0's): what other shares draw
    exhausted: bool = False  # in some epoch a shared pool ran out before the whole pool did
    left_out: int = 0  # whole rows an epoch left out because a shared pool ran out (not a cap): the shortfall
    shortest: int = 0  # the pool that ran out (0: none did)


def draw(pools: list[np.ndarray], shares: list[float | None], sizes: Sizes, *, by: str, seed: int, eval_rows: int,
         epochs: int = 1, redraw: bool = False, max_rows: int = 0, max_tokens: int = 0) -> Draw:
    """Shuffle each pool by the seed, hold its eval rows out and take each epoch's mix from the fronts. The pools
    whose share is None (whole) drive the mix laid together, as the draw's pool 0; without any, the first shared pool
    drives. Each pool, a whole one too, holds out its own eval rows (so each source has an eval loss); with `redraw`
    shared pools are reshuffled each epoch."""

    def shuffled(ids: np.ndarray, s: int) -> np.ndarray:
        return ids[np.random.default_rng(s).permutation(len(ids))]

    whole = [i for i, s in enumerate(shares) if s is None]
    rest, n_whole = 1 - sum(s for s in shares if s is not None), sum(len(pools[i]) for i in whole)
    weights = [rest * len(p) / max(n_whole, 1) if s is None else s for p, s in zip(pools, shares, strict=True)]
    order = [shuffled(p, seed) for p in pools]
    held = [o[len(o) - e:] if e else o[:0] for o, e in zip(order, split_eval([len(p) for p in pools], weights,
                                                                            eval_rows), strict=True)]
    kept = [o[:len(o) - len(h)] for o, h in zip(order, held, strict=True)]
    shared = [i for i, s in enumerate(shares) if s is not None]
    groups = [kept[i] for i in shared]  # the draw's pools: the whole ones laid together first (reshuffled if several)
    if whole:
        groups.insert(0, kept[whole[0]] if len(whole) == 1 else
                      shuffled(np.concatenate([kept[i] for i in whole]), seed))
    behind = ([None] if whole else []) + shared  # the pool behind each group
    group_weights = ([rest] if whole else []) + [shares[i] for i in shared]
    out = Draw([], np.concatenate(held) if held else np.zeros(0, np.int64), groups)
    for epoch in range(epochs):
        current = [groups[0]] + [groups[g] if epoch == 0 or not redraw else
                                 _without(shuffled(pools[behind[g]], seed + epoch), held[behind[g]])
                                 for g in range(1, len(groups))]
        plan = Plan([sizes.take(p) for p in current], group_weights, group_weights[0], by, max_rows, max_tokens)
        counts = plan.largest()
        if counts[0] < len(current[0]) and plan.short(counts[0] + 1):
            out.exhausted = True
            if plan.bound_by_a_share(counts[0]):
                out.shortest = next(i for i, n in enumerate(plan.counts(counts[0] + 1)) if n > len(current[i]))
                if whole:
                    out.left_out = max(out.left_out, len(current[0]) - counts[0])
        mix = np.concatenate([p[:n] for p, n in zip(current, counts, strict=True)])
        out.mixes.append(mix[np.random.default_rng(seed + epoch).permutation(len(mix))])
    return out


def _without(ids: np.ndarray, held: np.ndarray) -> np.ndarray:
    return ids[~np.isin(ids, held)]
