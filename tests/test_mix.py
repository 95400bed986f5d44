"""The mix's arithmetic as properties users rely on, on in-memory pools (no tokenizer, no files): fast."""

import itertools

import numpy as np
import pytest

from kit.data.mix import Plan, Sizes, counts, draw, split_eval


def pools(*lengths: int, seed: int = 0) -> tuple[list[np.ndarray], Sizes]:
    """Row ids laid end to end, one pool per length, with random token counts (trained <= tokens)."""
    rng = np.random.default_rng(seed)
    ids, start = [], 0
    for n in lengths:
        ids.append(np.arange(start, start + n))
        start += n
    tokens = rng.integers(20, 400, start)
    return ids, Sizes(tokens, (tokens * rng.uniform(0.2, 0.9, start)).astype(np.int64))


SETTINGS = list(itertools.product([0.1, 0.25, 0.5], ["rows", "tokens"], [1, 3], [False, True], [0, 7, 24]))


@pytest.mark.parametrize("share,by,epochs,redraw,eval_rows", SETTINGS)
def test_no_train_row_is_an_eval_row_in_any_epoch(share, by, epochs, redraw, eval_rows):
    ids, sizes = pools(300, 900, 40)
    drawn = draw(ids, [None, share, 0.05], sizes, by=by, seed=1, eval_rows=eval_rows, epochs=epochs, redraw=redraw)
    assert len(drawn.mixes) == epochs and len(drawn.eval_ids) == eval_rows
    for mix in drawn.mixes:
        assert not np.isin(mix, drawn.eval_ids).any()
        assert len(np.unique(mix)) == len(mix)  # no row twice in an epoch
    whole = ids[0][~np.isin(ids[0], drawn.eval_ids)]
    assert all(np.isin(whole, mix).all() for mix in drawn.mixes)  # the whole pool: every train row, every epoch


def test_the_eval_split_follows_the_shares_and_spares_every_pool():
    assert split_eval([1000, 1000], [0.75, 0.25], 24) == [18, 6]
    assert split_eval([1000, 1000, 1000], [0.9, 0.09, 0.01], 10) == [8, 1, 1]  # one of each, taken from the largest
    assert split_eval([1000, 1], [0.5, 0.5], 10) == [5, 0]  # never a whole pool: training needs rows of each
    assert split_eval([3, 3], [0.5, 0.5], 100) == [2, 2]
    assert split_eval([50, 50], [0.5, 0.5], 0) == [0, 0]


def test_each_whole_pool_holds_out_its_own_eval_rows_and_a_cap_draws_from_all_of_them():
    ids, sizes = pools(1000, 12, 3, 400)
    drawn = draw(ids, [None, None, None, 0.25], sizes, by="rows", seed=1, eval_rows=24)
    held = [int(np.isin(p, drawn.eval_ids).sum()) for p in ids]
    assert sum(held) == 24 and all(held)  # the 3-row source too: every source has its eval loss
    whole = np.concatenate(ids[:3])
    assert np.isin(whole[~np.isin(whole, drawn.eval_ids)], drawn.mixes[0]).all()  # the rest of them all train
    ids, sizes = pools(300, 300, 400)
    capped = draw(ids, [None, None, 0.2], sizes, by="rows", seed=1, eval_rows=0, max_rows=100)
    assert [np.isin(capped.mixes[0], p).sum() > 20 for p in ids] == [True, True, False]  # ~40 of 80 each, not 80 + 0


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 0.5, 0.9])
def test_by_rows_is_the_reference_recipes_arithmetic(ratio):
    ids, sizes = pools(19252, 200000)
    n = counts([sizes.take(i) for i in ids], [None, ratio], "rows")
    assert n == [19252, int(19252 * ratio / (1 - ratio))]  # 0.25: 6,417 chat rows, as Unsloth's notebook


@pytest.mark.parametrize("ratio", [0.05, 0.25, 0.5])
def test_by_tokens_takes_the_prefix_closest_to_the_share(ratio):
    ids, sizes = pools(200, 3000, seed=3)
    whole, chat = sizes.take(ids[0]), sizes.take(ids[1])
    n = counts([whole, chat], [None, ratio], "tokens")
    target = whole.trained.sum() * ratio / (1 - ratio)
    prefixes = np.concatenate([[0], np.cumsum(chat.trained)])
    assert n[0] == 200 and n[1] == int(np.argmin(np.abs(prefixes - target)))  # closest, not first above


def test_a_cap_keeps_every_share_and_binds():
    ids, sizes = pools(1000, 5000)
    parts = [sizes.take(i) for i in ids]
    n = counts(parts, [None, 0.25], "rows", max_rows=400)
    assert n == [300, 100]  # exactly the cap: a mix may fill it
    n = counts(parts, [None, 0.25], "rows", max_tokens=50_000)
    used = parts[0].tokens[:n[0]].sum() + parts[1].tokens[:n[1]].sum()
    assert used <= 50_000 and n[1] == int(n[0] / 3)
    assert used + parts[0].tokens[n[0]] + parts[1].tokens[n[1]:int((n[0] + 1) / 3)].sum() > 50_000  # the largest
    exact = counts(parts, [None, 0.25], "rows", max_tokens=int(used))
    assert exact == n  # a mix of exactly max_tokens tokens fits


def test_token_counts_are_exact_prefix_sums():
    sizes = Sizes(np.array([5, 7, 11]), np.array([1, 2, 3]))
    plan = Plan([sizes, sizes], [0.5, 0.5], 0.5, "tokens", 0, 0)
    assert plan.cum[0].tolist() == [0, 5, 12, 23] and plan.cum_trained[1].tolist() == [0, 1, 3, 6]
    assert Sizes.concat([]).tokens.dtype == np.int64 and len(Sizes.concat([]).trained) == 0


def test_by_tokens_rounds_to_the_closest_count_at_both_ends():
    one = Sizes(np.full(10, 100), np.full(10, 10))
    plan = Plan([one, one], [0.9, 0.1], 0.9, "tokens", 0, 0)  # target 10/9 trained tokens a row of pool 0
    assert [plan.follow(k, 1) for k in (1, 4, 5, 9)] == [0, 0, 1, 1]  # 1.1 -> 0 rows; 4.4 -> 0; 5.6 -> 1; 10 -> 1
    empty = Sizes(np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert counts([one, empty], [None, 0.1], "tokens") == [0, 0]  # nothing keeps a share of an empty pool
    assert Plan([one, empty], [0.9, 0.1], 0.9, "tokens", 0, 0).short(1)

def test_a_short_shared_pool_bounds_the_mix_and_says_so():
    ids, sizes = pools(1000, 100)
    drawn = draw(ids, [None, 0.25], sizes, by="rows", seed=0, eval_rows=0)
    # 302 reasoning rows keep 25 % with all 100 chat rows (int(302 / 3) = 100; 303 would need 101)
    assert len(drawn.mixes[0]) == 402 and drawn.exhausted and drawn.left_out == 698 and drawn.shortest == 1
    ids, sizes = pools(1000, 5000)
    drawn = draw(ids, [None, 0.25], sizes, by="rows", seed=0, eval_rows=0)
    assert not drawn.exhausted and drawn.left_out == 0


def test_without_a_whole_pool_the_shares_add_up():
    ids, sizes = pools(500, 500)
    drawn = draw(ids, [0.5, 0.5], sizes, by="rows", seed=0, eval_rows=0)
    mix = drawn.mixes[0]
    assert np.isin(mix, ids[0]).sum() == np.isin(mix, ids[1]).sum() == 500


def test_redraw_gives_each_epoch_its_own_chat_and_the_same_seed_the_same_draw():
    ids, sizes = pools(100, 2000)
    again = draw(ids, [None, 0.25], sizes, by="rows", seed=5, eval_rows=8, epochs=3, redraw=True)
    drawn = draw(ids, [None, 0.25], sizes, by="rows", seed=5, eval_rows=8, epochs=3, redraw=True)
    assert all((a == b).all() for a, b in zip(drawn.mixes, again.mixes, strict=True))
    chats = [set(m[np.isin(m, ids[1])]) for m in drawn.mixes]
    assert chats[0] != chats[1] != chats[2] and all(len(c) == len(chats[0]) for c in chats)
    fixed = draw(ids, [None, 0.25], sizes, by="rows", seed=5, eval_rows=8, epochs=3, redraw=False)
    assert all(set(m) == set(fixed.mixes[0]) for m in fixed.mixes)  # one draw, reshuffled each epoch
    assert not (fixed.mixes[0] == fixed.mixes[1]).all()
    other = draw(ids, [None, 0.25], sizes, by="rows", seed=6, eval_rows=8)
    assert set(other.mixes[0]) != set(drawn.mixes[0])


def test_plan_counts_follow_pool_zero():
    ids, sizes = pools(10, 100)
    plan = Plan([sizes.take(i) for i in ids], [0.75, 0.25], 0.75, "rows", 0, 0)
    assert plan.counts(9) == [9, 3] and not plan.short(10)
    ids, sizes = pools(10, 2)
    assert Plan([sizes.take(i) for i in ids], [0.75, 0.25], 0.75, "rows", 0, 0).short(9)


def test_the_eval_split_gives_the_remainder_to_the_largest_fractions():
    assert split_eval([1000, 1000], [3, 1], 24) == [18, 6]  # weights in proportion, not only shares summing to 1
    assert split_eval([1000, 1000], [0.57, 0.43], 10) == [6, 4]  # 5.7 and 4.3: the spare row goes to 0.7


def test_only_a_shared_pool_running_out_is_a_shortfall():
    ids, sizes = pools(1000, 100)
    capped = draw(ids, [None, 0.25], sizes, by="rows", seed=0, eval_rows=0, max_rows=401)
    assert len(capped.mixes) == 1 and len(capped.mixes[0]) == 401  # 301 + 100: the cap binds first
    assert not capped.exhausted and capped.left_out == 0  # 302 rows would still keep the share
    ids, sizes = pools(500, 100)
    no_whole = draw(ids, [0.5, 0.5], sizes, by="rows", seed=0, eval_rows=0)
    assert no_whole.exhausted and no_whole.left_out == 0 and len(no_whole.mixes[0]) == 200  # shares, not a shortfall
    ids, sizes = pools(1000, 5000, 30)
    second = draw(ids, [None, 0.25, 0.05], sizes, by="rows", seed=0, eval_rows=0)
    assert second.shortest == 2 and second.left_out > 0
