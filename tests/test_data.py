import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from kit.config import SourceConfig
from kit.data import BadRow, prepare_data, ratio_sweep, render
from kit.data.formats import DataError, to_messages
from kit.data.mix import Sizes, counts
from kit.data.template import IGNORE, Labeller, encode_batch

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = [("final", False), ("final", True), ("all", False), ("all", True)]  # train_turns, train_empty_think


def _rows(path: str) -> list[dict]:
    if path.endswith(".parquet"):
        return pq.read_table(ROOT / path).to_pylist()
    return [json.loads(line) for line in (ROOT / path).read_text().splitlines()]


def _examples() -> dict[str, list[dict]]:
    """One conversation of each kind the sample data holds, converted by the kit."""
    reasoning = SourceConfig(format="openmath", path="x")
    chat = SourceConfig(format="sharegpt", path="x")
    convs = [to_messages(r, chat) for r in _rows("data/finetome_sample.jsonl")]
    return {
        "reasoning": to_messages(_rows("data/openmath_sample.parquet")[0], reasoning),
        "chat": next(c for c in convs if len(c) == 2),
        "system": next(c for c in convs if c[0]["role"] == "system"),
        "multi_turn": next(c for c in convs if len(c) >= 4 and c[0]["role"] != "system"),
    }


@pytest.mark.parametrize("kind", ["reasoning", "chat", "system", "multi_turn"])
def test_rendering_equals_the_real_qwen3_template(qwen3_tokenizer, kind):
    conversation = _examples()[kind]
    expected = qwen3_tokenizer.apply_chat_template(conversation, tokenize=False)
    assert render(qwen3_tokenizer, conversation) == expected
    if kind == "reasoning":
        assert "<think>\n" in expected and "\n</think>\n\n" in expected and "\\boxed{" in expected
    else:
        assert expected.endswith("<think>\n\n</think>\n\n" + conversation[-1]["content"] + "<|im_end|>\n")


def test_tiny_tokenizer_renders_like_qwen3(tiny_tokenizer, qwen3_tokenizer):
    for conversation in _examples().values():
        assert render(tiny_tokenizer, conversation) == render(qwen3_tokenizer, conversation)
    prompt = [{"role": "user", "content": "Hi"}]
    for thinking in (True, False):
        assert (tiny_tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                                   enable_thinking=thinking)
                == qwen3_tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                                       enable_thinking=thinking))


def _prepare(cfg, tokenizer):
    return prepare_data(cfg, tokenizer, progress=False)


def _trained_text(tokenizer, row) -> str:
    return tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label != -100])


def _char_spans(text: str, train_turns: str, train_empty_think: bool) -> list[tuple[int, int]]:
    """The oracle: character spans of the assistant parts, found in the text (how the kit labelled before it read
    token ids): after each `<|im_start|>assistant\n` (and the empty think block unless trained) through `<|im_end|>`."""
    head, empty_think, spans, pos = "<|im_start|>assistant\n", "<think>\n\n</think>\n\n", [], 0
    while (start := text.find(head, pos)) != -1:
        body = start + len(head)
        end = text.find("<|im_end|>", body)
        end = len(text) if end == -1 else end + len("<|im_end|>")
        if not train_empty_think and text.startswith(empty_think, body):
            body += len(empty_think)
        if end > body:
            spans.append((body, end))
        pos = end
    return spans[-1:] if train_turns == "final" else spans


def _oracle_labels(tokenizer, text: str, train_turns: str, train_empty_think: bool) -> tuple[list[int], list[int]]:
    """Token ids and labels by the oracle's spans, mapped to tokens through the tokenizer's character offsets."""
    encoding = tokenizer(text, add_special_tokens=False)
    ids, trained = encoding["input_ids"], [False] * len(encoding["input_ids"])
    for start, end in _char_spans(text, train_turns, train_empty_think):
        for i in range(encoding.char_to_token(start), encoding.char_to_token(end - 1) + 1):
            trained[i] = True
    return ids, [t if keep else IGNORE for t, keep in zip(ids, trained, strict=True)]


TRICKY = [  # conversations whose text holds the markers' words, or answers that merge with the header's newline
    [{"role": "user", "content": "Print <|im_start|>assistant\nhello and stop."},
     {"role": "assistant", "content": "hi"}],
    [{"role": "user", "content": "Say assistant\nplease"}, {"role": "assistant", "content": "assistant\nsure"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\n\nstarts with blank lines"},
     {"role": "user", "content": "b"}, {"role": "assistant", "content": " \nstarts with a space and a newline"}],
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "\u3000\nideographic space"},
     {"role": "user", "content": "b"}, {"role": "assistant", "content": "\t\ttabs"}],
    [{"role": "system", "content": "<think>\n\n</think>\n\n is an empty think block"},
     {"role": "user", "content": "<|im_end|> inside a prompt"}, {"role": "assistant", "content": "x <|im_end|> y"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\n\n</think>\n\nexplicitly empty"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "A", "reasoning_content": "because"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>\nr\n</think>\n\n \nspaced"}],
]


def _all_conversations(tmp_path) -> list[list[dict]]:
    """Every row of the sample data and of the benchmark's data (built from it at realistic lengths), and TRICKY."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_data", ROOT / "scripts" / "bench_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench_reasoning, bench_chat = bench.write_rows(tmp_path, 60, 300)
    files = [("data/openmath_sample.parquet", "openmath"), ("data/openmath_heldout.parquet", "openmath"),
             ("data/finetome_sample.jsonl", "sharegpt"), ("data/finetome_heldout.jsonl", "sharegpt"),
             ("data/custom_messages.jsonl", "messages"), ("data/custom_sharegpt.jsonl", "sharegpt"),
             ("data/custom_alpaca.jsonl", "alpaca"), (str(bench_reasoning), "openmath"), (str(bench_chat), "sharegpt")]
    rows = [to_messages(row, SourceConfig(format=fmt, path=path)) for path, fmt in files for row in _rows(path)]
    return rows + TRICKY


@pytest.mark.parametrize("which", ["qwen3", "tiny"])
def test_labels_from_token_ids_equal_the_character_spans(qwen3_tokenizer, tiny_tokenizer, tmp_path, which):
    """The kit labels from token ids alone (no offsets); for every row of the sample and benchmark data and every
    labelling option this gives exactly the tokens that the assistant parts' character spans cover."""
    tokenizer = qwen3_tokenizer if which == "qwen3" else tiny_tokenizer
    texts = [render(tokenizer, c) for c in _all_conversations(tmp_path)]
    tokenizer(["pad", "these two rows"], padding=True)  # a padded call leaves padding on in the Rust tokenizer
    for turns, empty_think in SETTINGS:
        encoded = encode_batch(tokenizer, Labeller(tokenizer, turns, empty_think), texts, max_length=1 << 20,
                               overlong="drop")
        for text, got in zip(texts, encoded, strict=True):
            ids, labels = _oracle_labels(tokenizer, text, turns, empty_think)
            if isinstance(got, str):
                assert got == "nothing_to_train" and set(labels) == {IGNORE}, text
            else:
                assert (got.input_ids.tolist(), got.labels.tolist()) == (ids, labels), (turns, empty_think, text)


def test_tricky_rows_label_what_the_template_makes_an_answer(qwen3_tokenizer):
    """Marker words typed into a message are the special tokens themselves (the template's text is what the model
    sees), so a user message holding `<|im_start|>assistant\n` opens a turn there; a plain `assistant\n` does not."""
    labeller = Labeller(qwen3_tokenizer, "all", False)

    def trained(conversation: list[dict]) -> list[str]:
        ids = np.array(qwen3_tokenizer(render(qwen3_tokenizer, conversation), add_special_tokens=False)["input_ids"])
        return [qwen3_tokenizer.decode(ids[a:b + 1]) for a, b in labeller.spans(ids)]

    assert trained(TRICKY[0]) == ["hello and stop.<|im_end|>", "hi<|im_end|>"]
    assert trained(TRICKY[1]) == ["assistant\nsure<|im_end|>"]
    # The header's newline and an answer's blank lines are one token: trained, as it holds answer text.
    assert trained(TRICKY[2]) == ["\n\n\nstarts with blank lines<|im_end|>",
                                  " \nstarts with a space and a newline<|im_end|>"]
    assert trained(TRICKY[4]) == ["x <|im_end|>"]  # an `<|im_end|>` typed into an answer ends it there


@pytest.mark.parametrize("turns,empty_think", [("final", False), ("all", False), ("all", True)])
def test_labels_are_exactly_the_assistant_parts(qwen3_tokenizer, smoke_cfg, turns, empty_think):
    cfg = smoke_cfg(f"data.train_turns={turns}", f"data.train_empty_think={str(empty_think).lower()}",
                    "data.eval_rows=0")
    prepared = _prepare(cfg, qwen3_tokenizer)
    checked = 0
    for row in prepared.train.select(range(60)):
        ids = row["input_ids"]
        # The token ids are the real template's tokenization of the whole conversation ...
        text = qwen3_tokenizer.decode(ids)
        assert qwen3_tokenizer(text, add_special_tokens=False)["input_ids"] == ids
        # ... and the labels decode to exactly the assistant parts the options select.
        expected = "".join(text[s:e] for s, e in _char_spans(text, turns, empty_think))
        assert _trained_text(qwen3_tokenizer, row) == expected
        assert expected.endswith("<|im_end|>") and "<|im_start|>" not in expected
        if row["source"] == "reasoning":
            assert expected.startswith("<think>\n") and len(expected) > 20
        elif not empty_think:
            assert "<think>" not in expected
        checked += 1
    assert checked == 60


def test_multi_turn_labels_select_final_or_all_turns(qwen3_tokenizer):
    conversation = _examples()["multi_turn"]
    ids = np.array(qwen3_tokenizer(render(qwen3_tokenizer, conversation), add_special_tokens=False)["input_ids"])

    def trained(turns: str, empty_think: bool = False) -> list[str]:
        spans = Labeller(qwen3_tokenizer, turns, empty_think).spans(ids)
        return [qwen3_tokenizer.decode(ids[a:b + 1]) for a, b in spans]

    assert trained("final") == [conversation[-1]["content"] + "<|im_end|>"]
    assert trained("all") == [m["content"] + "<|im_end|>" for m in conversation if m["role"] == "assistant"]
    assert trained("final", True) == ["<think>\n\n</think>\n\n" + conversation[-1]["content"] + "<|im_end|>"]


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5, 0.8])
def test_ratio_by_rows_is_within_one_row(tiny_tokenizer, smoke_cfg, ratio):
    # 0.5 and 0.8 ask for more chat than the sample has: the ratio is kept on a smaller mix, as allowed
    report = _prepare(smoke_cfg(f"data.chat_ratio={ratio}", "data.eval_rows=0", "data.allow_shortfall=true"),
                      tiny_tokenizer).report["mix"]
    total = report["train_rows"]
    assert abs(report["chat_rows"] - ratio * total) <= 1, report


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_ratio_by_tokens_counts_trained_tokens(tiny_tokenizer, smoke_cfg, ratio):
    """By tokens, the ratio is the chat share of the trained tokens (the training signal), within one chat row."""
    prepared = _prepare(smoke_cfg(f"data.chat_ratio={ratio}", "data.ratio_by=tokens", "data.eval_rows=0",
                                  "data.allow_shortfall=true"), tiny_tokenizer)  # the sample's chat is short of 0.3+
    mix, chat = prepared.report["mix"], prepared.report["sources"]["chat"]
    assert abs(chat["trained_tokens_used"] - ratio * mix["train_trained_tokens"]) <= chat["length"]["max"], mix
    # Chat prompts are a larger part of a chat row than of a reasoning row: by all tokens chat gets more.
    assert mix["chat_share_tokens"] > mix["chat_share_trained_tokens"] and mix["chat_share_rows"] > ratio


def _sizes(tokens: np.ndarray) -> Sizes:
    return Sizes(tokens, tokens)


def choose_counts(reasoning: Sizes, chat: Sizes, ratio: float, by: str, **caps) -> tuple[int, int]:
    """The recipe's two sources: reasoning whole, chat at `ratio` of the mix (all chat when ratio is 1)."""
    if ratio >= 1:
        return 0, counts([chat], [1.0], by, **caps)[0]
    return tuple(counts([reasoning, chat], [None, ratio], by, **caps)) if ratio > 0 else \
        (counts([reasoning], [None], by, **caps)[0], 0)


def test_choose_counts_keeps_the_ratio_when_chat_runs_short_or_a_cap_binds():
    reasoning, chat = _sizes(np.full(1000, 10)), _sizes(np.full(50, 2))
    k, m = choose_counts(reasoning, chat, 0.5, "rows")
    assert (k, m) == (50, 50)  # only 50 chat rows: reasoning is cut to keep 50 %
    k, m = choose_counts(reasoning, chat, 0.25, "rows", max_rows=40)
    assert k + m <= 40 and abs(m - 0.25 * (k + m)) <= 1
    k, m = choose_counts(reasoning, chat, 0.5, "tokens", max_tokens=100)
    assert 10 * k + 2 * m <= 100 and abs(2 * m - 10 * k) <= 2
    assert choose_counts(reasoning, chat, 0.0, "rows", max_rows=7) == (7, 0)
    assert choose_counts(reasoning, chat, 1.0, "tokens", max_tokens=21) == (0, 10)


def test_choose_counts_balances_trained_tokens_and_caps_all_tokens():
    reasoning = Sizes(np.full(100, 10), np.full(100, 8))  # 8 of 10 tokens trained
    chat = Sizes(np.full(100, 10), np.full(100, 4))  # a chat row's prompt is a larger part of it
    k, m = choose_counts(reasoning, chat, 0.5, "tokens")
    assert (k, m) == (50, 100)  # 50 * 8 trained = 100 * 4 trained
    k, m = choose_counts(reasoning, chat, 0.5, "tokens", max_tokens=300)
    assert 10 * (k + m) <= 300 and abs(8 * k - 4 * m) <= 4


def test_reference_recipe_arithmetic():
    # 19,252 reasoning rows at 25 % chat -> 6,417 chat rows (Unsloth's notebook).
    assert choose_counts(_sizes(np.ones(19252)), _sizes(np.ones(100000)), 0.25, "rows") == (19252, 6417)


def test_same_seed_same_mix_other_seed_other_mix(tiny_tokenizer, smoke_cfg):
    a = _prepare(smoke_cfg("data.seed=1"), tiny_tokenizer)
    b = _prepare(smoke_cfg("data.seed=1", "data.overlong=drop"), tiny_tokenizer)  # same config: cached copy
    c = _prepare(smoke_cfg("data.seed=2"), tiny_tokenizer)
    assert b.cached and a.train["input_ids"] == b.train["input_ids"]
    assert a.train["input_ids"] != c.train["input_ids"]
    assert a.report["mix"]["chat_rows"] == c.report["mix"]["chat_rows"]


def test_cached_rerun_reuses_the_prepared_set(tiny_tokenizer, smoke_cfg):
    first = _prepare(smoke_cfg("data.seed=11"), tiny_tokenizer)
    again = _prepare(smoke_cfg("data.seed=11"), tiny_tokenizer)
    assert not first.cached and again.cached and again.path == first.path
    assert again.report == first.report


def test_redraw_each_epoch_draws_another_subset(tiny_tokenizer, smoke_cfg):
    prepared = prepare_data(smoke_cfg("data.redraw_each_epoch=true", "data.eval_rows=0"), tiny_tokenizer,
                            epochs=2, progress=False)
    rows = prepared.train
    assert prepared.report["mix"]["epochs"] == 2
    half = len(rows) // 2
    first = {tuple(r["input_ids"]) for r in rows.select(range(half)) if r["source"] == "chat"}
    second = {tuple(r["input_ids"]) for r in rows.select(range(half, len(rows))) if r["source"] == "chat"}
    assert first and second and first != second


def test_report_counts_sources_lengths_and_drops(tiny_tokenizer, smoke_cfg):
    report = _prepare(smoke_cfg("model.max_seq_length=108", "data.overlong=drop"), tiny_tokenizer).report
    reasoning = report["sources"]["reasoning"]
    assert reasoning["rows_read"] == 343 and reasoning["dropped"]["too_long"] > 0
    assert reasoning["rows_read"] == reasoning["rows_valid"] + sum(reasoning["dropped"].values())
    assert reasoning["rows_kept"] == reasoning["rows_valid"] - reasoning["rows_untokenized"]
    assert reasoning["length"]["max"] <= 108
    truncated = _prepare(smoke_cfg("model.max_seq_length=108", "data.overlong=truncate"), tiny_tokenizer)
    assert "too_long" not in truncated.report["sources"]["reasoning"]["dropped"]
    assert max(len(ids) for ids in truncated.train["input_ids"]) == 108


def test_filters_and_schema_drift(tiny_tokenizer, smoke_cfg):
    # The held-out file lacks the newer `used_in_kaggle` column; a glob reads both files.
    cfg = smoke_cfg("data.reasoning.path=data/openmath_*.parquet", "data.reasoning.min_pass_rate=0.5",
                    "data.reasoning.problem_types=[has_answer_extracted]")
    dropped = _prepare(cfg, tiny_tokenizer).report["sources"]["reasoning"]
    assert dropped["rows_read"] == 460
    assert dropped["dropped"]["filtered_problem_type"] > 0 and dropped["dropped"]["filtered_pass_rate"] > 0


@pytest.mark.parametrize("fmt", ["messages", "sharegpt", "alpaca"])
def test_user_data_formats(tiny_tokenizer, smoke_cfg, fmt):
    cfg = smoke_cfg("data.chat_ratio=1", f"data.chat.path=data/custom_{fmt}.jsonl", f"data.chat.format={fmt}",
                    "data.eval_rows=0")
    prepared = _prepare(cfg, tiny_tokenizer)
    assert prepared.report["mix"]["train_rows"] == len(_rows(f"data/custom_{fmt}.jsonl"))


def _bad_cfg(smoke_cfg, tmp_path, lines: list[str], *extra: str):
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return smoke_cfg("data.chat_ratio=1", f"data.chat.path={path}", *extra), path


GOOD = json.dumps({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]})
def _reply(text: str) -> str:
    return json.dumps({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": text}]})


BAD_ROWS = {
    "malformed_json": ('{"conversations": [', r"chat.jsonl line 2: invalid JSON"),
    "missing_field": (json.dumps({"text": "hi"}), r"source 'chat' \(.*chat.jsonl\) row 2: field 'conversations'"),
    "empty_content": (json.dumps({"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": " "}]}),
                      r"row 2: field 'conversations\[1\].value': empty"),
    # auto reads the format off row 1: a row in another one is named, and the fix is a source per format
    "wrong_format": (json.dumps({"instruction": "Hi", "output": "Hello."}),
                     r"row 2: field 'instruction, output': this row is in the alpaca format, not sharegpt: the "
                     r"source's first row was sharegpt, and a source holds one format: give each format its own"),
    "unknown_role": (json.dumps({"conversations": [{"from": "bot", "value": "Hi"}, {"from": "gpt", "value": "x"}]}),
                     r"row 2: field 'conversations\[0\].from': unknown role 'bot'"),
    # Reasoning traces as the real data holds them when a generation was cut or glued together.
    "unclosed_think": (_reply("<think>\nstep one"),
                       r"row 2: field 'conversations\[1\].value': opens <think> but never"),
    "several_think_blocks": (_reply("<think>a</think><think>b</think>c"), r"row 2: .*2 <think> and 2 </think>"),
    "think_not_opened": (_reply("a</think> b"), r"row 2: .*closes </think> without opening <think>"),
    "text_before_think": (_reply("Sure. <think>a</think> b"), r"row 2: .*has text before <think>"),
    "no_answer_after_think": (_reply("<think>a</think>\n"), r"row 2: .*ends at </think> with no answer"),
}


def test_sharegpt_turns_written_as_role_and_content_are_read(tiny_tokenizer, smoke_cfg, tmp_path):
    turns = json.dumps({"conversations": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo."}]})
    cfg, _ = _bad_cfg(smoke_cfg, tmp_path, [GOOD, turns, GOOD], "data.eval_rows=0")
    assert _prepare(cfg, tiny_tokenizer).report["sources"]["chat"]["rows_valid"] == 3
    no_role = json.dumps({"conversations": [{"value": "Hi"}, {"from": "gpt", "value": "x"}]})
    cfg, _ = _bad_cfg(smoke_cfg, tmp_path, [GOOD, no_role, GOOD])
    with pytest.raises(DataError, match=r"row 2: field 'conversations\[0\].from': missing \(a turn is \{from, value\} "
                                        r"or \{role, content\}\)"):
        _prepare(cfg, tiny_tokenizer)


@pytest.mark.parametrize("reason", list(BAD_ROWS))
def test_bad_input_is_an_error_naming_file_row_and_field(tiny_tokenizer, smoke_cfg, tmp_path, kit_cache, reason):
    line, message = BAD_ROWS[reason]
    cfg, _ = _bad_cfg(smoke_cfg, tmp_path, [GOOD, line, GOOD], "data.chat.format=auto")
    before = sorted((kit_cache / "prepared").glob("*")) if (kit_cache / "prepared").exists() else []
    with pytest.raises(ValueError, match=message):
        _prepare(cfg, tiny_tokenizer)
    after = sorted((kit_cache / "prepared").glob("*"))
    assert after == before, "a failed preparation left files behind"


def test_byte_order_mark_is_valid_utf8(tiny_tokenizer, smoke_cfg, tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join([GOOD, GOOD]).encode())  # as Windows Notepad saves UTF-8
    listed = tmp_path / "chat.json"
    listed.write_bytes(b"\xef\xbb\xbf" + f"[{GOOD}, {GOOD}]".encode())
    for source in (path, listed):
        report = _prepare(smoke_cfg("data.chat_ratio=1", f"data.chat.path={source}", "data.eval_rows=0"),
                          tiny_tokenizer).report
        assert report["mix"]["train_rows"] == 2


@pytest.mark.parametrize("mode", ["error", "skip"])
def test_bytes_that_are_not_utf8_name_file_and_line(tiny_tokenizer, smoke_cfg, tmp_path, mode):
    path = tmp_path / "chat.jsonl"
    latin1 = GOOD.replace("Hello", "H\xe9llo").encode("latin-1")  # a file saved in another encoding
    path.write_bytes(f"{GOOD}\n".encode() + latin1 + f"\n{GOOD}\n".encode())
    cfg = smoke_cfg("data.chat_ratio=1", f"data.chat.path={path}", f"data.on_bad_row={mode}", "data.eval_rows=0")
    if mode == "error":
        with pytest.raises(DataError, match=r"chat.jsonl line 2: not UTF-8 text \(byte 0xe9 at column \d+\)"):
            _prepare(cfg, tiny_tokenizer)
    else:
        report = _prepare(cfg, tiny_tokenizer).report
        assert report["sources"]["chat"]["dropped"] == {"not_utf8": 1} and report["mix"]["train_rows"] == 2
    listed = tmp_path / "chat.json"
    listed.write_bytes(b"[" + GOOD.encode() + b", " + latin1 + b"]")
    with pytest.raises(DataError, match=r"chat.json line 1: not UTF-8 text \(byte 0xe9\)"):
        _prepare(smoke_cfg("data.chat_ratio=1", f"data.chat.path={listed}"), tiny_tokenizer)


def test_chat_that_runs_short_of_the_ratio_is_said(tiny_tokenizer, smoke_cfg, capsys):
    with pytest.raises(DataError, match=r"^source 'chat' \(.*finetome_sample.jsonl.*\) has no usable row: of the 300 "
                                        r"read, dropped 300 filtered_max_chars; filtered_\* rows are the"):
        _prepare(smoke_cfg("data.chat.max_chars=1"), tiny_tokenizer)  # every chat row filtered out
    with pytest.raises(DataError, match=r"chat runs short: its \d+ usable rows keep data.chat_ratio=0.6 by rows only "
                                        r"with \d+ of the \d+ rows of reasoning; add chat data"):
        _prepare(smoke_cfg("data.chat_ratio=0.6"), tiny_tokenizer)  # as many chat rows as reasoning rows
    with pytest.raises(DataError, match=r"chat runs short: its \d+ usable rows keep data.chat_ratio=0.8"):
        _prepare(smoke_cfg("data.chat_ratio=0.8"), tiny_tokenizer)  # 4 chat rows a reasoning row: some chat is left
    more = _prepare(smoke_cfg("data.chat_ratio=0.6", "data.allow_shortfall=true"), tiny_tokenizer)
    assert more.report["mix"]["chat_share_rows"] == pytest.approx(0.6, abs=0.01)
    assert "data.allow_shortfall=true, so the smaller mix is used" in capsys.readouterr().out


def test_an_empty_source_is_named(tiny_tokenizer, smoke_cfg, tmp_path):
    empty = tmp_path / "chat.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match=r"data source '.*chat.jsonl' has no rows"):
        _prepare(smoke_cfg(f"data.chat.path={empty}"), tiny_tokenizer)


def test_missing_field_names_source_row_and_field(tiny_tokenizer, smoke_cfg, tmp_path):
    path = tmp_path / "math.jsonl"
    path.write_text(json.dumps({"problem": "1+1?", "generated_solution": "<think>\nx\n</think>\n\n2"}) + "\n"
                    + json.dumps({"problem": "2+2?"}) + "\n")
    cfg = smoke_cfg("data.chat_ratio=0", f"data.reasoning.path={path}")
    with pytest.raises(BadRow, match=r"source 'reasoning' \(.*math.jsonl\) row 2: field 'generated_solution': missing"):
        _prepare(cfg, tiny_tokenizer)


def test_skip_mode_counts_bad_rows_in_the_report(tiny_tokenizer, smoke_cfg, tmp_path):
    lines = [GOOD] + [line for line, _ in BAD_ROWS.values()] + [GOOD]
    cfg, _ = _bad_cfg(smoke_cfg, tmp_path, lines, "data.on_bad_row=skip", "data.eval_rows=0")
    report = _prepare(cfg, tiny_tokenizer).report
    assert report["sources"]["chat"]["dropped"] == {reason: 1 for reason in BAD_ROWS}
    assert report["mix"]["train_rows"] == 2


@pytest.mark.parametrize("settings", [
    ["data.on_bad_row=skip", "model.max_seq_length=108", "data.overlong=drop"],  # bad rows, too long, a subset of chat
    ["data.on_bad_row=error", "model.max_seq_length=108", "data.overlong=drop", "data.redraw_each_epoch=true",
     "train.num_train_epochs=2"],  # two passes over the shared chat
    ["data.cache_pools=true", "data.reasoning.max_rows=60"],  # the sweep's cached pools; a source stopped early
])
def test_every_sources_rows_add_up(tiny_tokenizer, smoke_cfg, tmp_path, settings):
    """rows read = rows valid + rows dropped (each cause), and valid = kept + never tokenized, for every source."""
    lines = [GOOD] + [line for line, _ in BAD_ROWS.values()] + [GOOD]
    (tmp_path / "extra.jsonl").write_text("\n".join(lines) + "\n")
    extra = [f"data.sources=[{{path: {tmp_path / 'extra.jsonl'}}}]"] if "skip" in settings[0] else []
    cfg = smoke_cfg(*settings, *extra)
    report = prepare_data(cfg, tiny_tokenizer, epochs=2 if "train.num_train_epochs=2" in settings else 1,
                          progress=False).report
    for name, s in report["sources"].items():
        assert s["rows_read"] == s["rows_valid"] + sum(s["dropped"].values()), name
        assert s["rows_valid"] == s["rows_kept"] + s["rows_untokenized"], name
    assert any(s["dropped"] for s in report["sources"].values())


def test_modelscope_datasets_stream_shard_by_shard(tiny_tokenizer, smoke_cfg, monkeypatch, tmp_path):
    """The default sources: data sets on ModelScope, fetched by the real client from a fake ModelScope, one shard
    at a time, so `max_rows` on the huge `cot` split downloads only the shards it reads."""
    import io

    import pyarrow as pa

    from tests.fake_modelscope import FakeModelScope, FakeRepo

    def parquet(rows: list[dict]) -> bytes:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buffer)
        return buffer.getvalue()

    math = _rows("data/openmath_sample.parquet")
    chat = _rows("data/finetome_sample.jsonl")
    fake = FakeModelScope(datasets={
        "nv-community/OpenMathReasoning": FakeRepo({
            "data/cot-00000-of-00002.parquet": parquet(math[:200]), "data/cot-00001-of-00002.parquet":
            parquet(math[200:]), "data/tir-00000-of-00001.parquet": parquet(math[:10]), "README.md": b"# card"}),
        "AI-ModelScope/FineTome-100k": FakeRepo({"data/train-00000-of-00001.parquet": parquet(chat)}),
    }).start()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", fake.endpoint)
    try:
        cfg = smoke_cfg("data.reasoning.hub=modelscope", "data.reasoning.path=nv-community/OpenMathReasoning",
                        "data.reasoning.split=cot", "data.reasoning.max_rows=200",  # exactly the first shard
                        "data.reasoning.heldout=0",
                        "data.chat.hub=modelscope", "data.chat.path=AI-ModelScope/FineTome-100k")
        prepared = prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False)
    finally:
        fake.stop()
    files = [r.split("FilePath=")[1] for r in fake.downloads()]
    assert files == ["data%2Fcot-00000-of-00002.parquet", "data%2Ftrain-00000-of-00001.parquet"]
    assert prepared.report["sources"]["reasoning"]["rows_kept"] == 200
    assert prepared.report["sources"]["chat"]["rows_valid"] == len(chat)


def test_a_republished_data_set_is_prepared_again_and_offline_reruns_use_the_last_listing(
        tiny_tokenizer, smoke_cfg, monkeypatch, tmp_path, capsys):
    from tests.fake_modelscope import FakeModelScope, FakeRepo

    chat = (ROOT / "data/finetome_sample.jsonl").read_bytes()
    fake = FakeModelScope(datasets={"AI-ModelScope/FineTome-100k": FakeRepo({"data/train.jsonl": chat})}).start()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", fake.endpoint)
    cfg = smoke_cfg("data.chat.hub=modelscope", "data.chat.path=AI-ModelScope/FineTome-100k")
    try:
        first = prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False)
        assert prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False).cached
        lines = chat.decode().splitlines()
        fake.datasets["AI-ModelScope/FineTome-100k"].files["data/train.jsonl"] = "\n".join(lines[:-20]).encode()
        republished = prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False)
    finally:
        fake.stop()
    assert not republished.cached and republished.path != first.path
    assert republished.report["sources"]["chat"]["rows_read"] == len(lines) - 20
    offline = prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False)  # the hub is gone now
    assert offline.cached and offline.path == republished.path
    assert "cannot reach ModelScope" in capsys.readouterr().out


def test_unreachable_dataset_hub_names_the_fix(tiny_tokenizer, smoke_cfg, monkeypatch, tmp_path):
    from kit.hub import NetworkUnreachable

    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")
    cfg = smoke_cfg("data.chat.hub=modelscope", "data.chat.path=AI-ModelScope/FineTome-100k")
    with pytest.raises(NetworkUnreachable, match="source /etc/network_turbo"):
        prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False)


@pytest.mark.parametrize("hub", ["unreachable", "without it"])
def test_a_mistyped_local_path_read_as_a_data_set_id_says_so(tiny_tokenizer, smoke_cfg, monkeypatch, tmp_path, hub):
    from kit.hub import HubError
    from tests.fake_modelscope import FakeModelScope

    fake = FakeModelScope().start()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9" if hub == "unreachable" else fake.endpoint)
    cfg = smoke_cfg()
    cfg.data.sources = [SourceConfig(path="data/custom_alpaca")]  # the file is data/custom_alpaca.jsonl
    try:
        with pytest.raises(HubError, match=r"\(No file or folder 'data/custom_alpaca' \(relative to .*\) exists "
                                           r"either, so it was read as a data set id: if it is a local path, correct "
                                           r"it.\)$"):
            prepare_data(cfg, tiny_tokenizer, cache_dir=tmp_path, progress=False)
    finally:
        fake.stop()


def test_chat_is_tokenized_only_as_far_as_the_mix_needs(tiny_tokenizer, smoke_cfg):
    prepared = _prepare(smoke_cfg("data.seed=21", "data.eval_rows=0"), tiny_tokenizer)
    mix, chat = prepared.report["mix"], prepared.report["sources"]["chat"]
    assert chat["rows_used"] < chat["rows_kept"] < chat["rows_valid"] == 300
    assert abs(mix["chat_rows"] - 0.25 * mix["train_rows"]) <= 1
    # By tokens the subset is sized by estimated trained tokens, the count the ratio balances: it suffices.
    by_tokens = _prepare(smoke_cfg("data.seed=21", "data.eval_rows=0", "data.ratio_by=tokens",
                                   "data.chat_ratio=0.1"), tiny_tokenizer).report
    chat = by_tokens["sources"]["chat"]
    assert chat["rows_used"] < chat["rows_kept"] < chat["rows_valid"]
    assert abs(by_tokens["mix"]["chat_share_trained_tokens"] - 0.1) < 0.01
    # The sweep draws from the same pools: at the asked ratio it is the mix; beyond the tokenized chat rows it
    # counts the others at their estimated lengths.
    (same,) = ratio_sweep(prepared, [0.25], by="rows")
    assert (same["reasoning_rows"], same["chat_rows"]) == (mix["reasoning_rows"], mix["chat_rows"])
    (more,) = ratio_sweep(prepared, [0.8], by="tokens")
    assert more["chat_rows"] > chat["rows_kept"] and abs(more["chat_share_trained_tokens"] - 0.8) < 0.02


def test_too_small_a_chat_subset_falls_back_to_all_rows(tiny_tokenizer, smoke_cfg, monkeypatch):
    import kit.data.prepare as prepare

    monkeypatch.setattr(prepare, "MARGIN", 0.05)  # an estimate far too low: the first subset runs short
    report = _prepare(smoke_cfg("data.seed=22", "data.eval_rows=0"), tiny_tokenizer).report
    assert report["sources"]["chat"]["rows_kept"] == 300  # every chat row tokenized on the second pass
    assert abs(report["mix"]["chat_rows"] - 0.25 * report["mix"]["train_rows"]) <= 1
    reasoning = report["sources"]["reasoning"]
    assert reasoning["rows_used"] == reasoning["rows_valid"] - reasoning["eval_rows"]


def test_cached_pools_let_another_ratio_tokenize_nothing(tiny_tokenizer, smoke_cfg, monkeypatch, tmp_path):
    """With data.cache_pools (what the sweep sets) the sources are tokenized once: a mix at another ratio reads the
    cached pools, and is the very mix that tokenizing them for it would have made."""
    import kit.data.template as template

    tokenized: list[int] = []
    encode = template.encode_batch
    monkeypatch.setattr(template, "encode_batch", lambda *args, **kw: tokenized.append(len(args[2])) or encode(*args,
                                                                                                               **kw))

    def prepare(ratio: float, cache):
        cfg = smoke_cfg("data.cache_pools=true", f"data.chat_ratio={ratio}", "data.allow_shortfall=true")  # 0.5 is
        # more chat than the sample has: its smaller mix
        return prepare_data(cfg, tiny_tokenizer, cache_dir=cache, progress=False)

    first = prepare(0.1, tmp_path / "sweep")
    sources = first.report["sources"]
    assert sum(tokenized) == sources["reasoning"]["rows_valid"] + 300  # every chat row, not only those 10 % needs
    assert sources["chat"]["rows_kept"] == sources["chat"]["rows_valid"] == 300 > sources["chat"]["rows_used"]
    tokenized.clear()
    second = prepare(0.5, tmp_path / "sweep")
    assert not second.cached and tokenized == []  # a new mix, drawn from the pools without tokenizing anything
    assert abs(second.report["mix"]["chat_share_rows"] - 0.5) < 0.01
    fresh = prepare(0.5, tmp_path / "fresh")  # the same ratio with nothing cached: tokenized for it alone
    assert sum(tokenized) > 0 and fresh.report["fingerprint"] == second.report["fingerprint"]
    assert fresh.train["input_ids"] == second.train["input_ids"] and fresh.eval["labels"] == second.eval["labels"]
    assert {k: v for k, v in fresh.report.items() if k != "seconds"} == \
        {k: v for k, v in second.report.items() if k != "seconds"}


def test_own_data_beside_the_recipe_as_the_shipped_example_config_says(tiny_tokenizer):
    """configs/own-data.yaml: the data/custom_* files, formats and roles read off their rows, all of their rows."""
    from kit.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "configs" / "own-data.yaml")
    sources = _prepare(cfg, tiny_tokenizer).report["sources"]
    for name, rows in (("custom_messages", 12), ("custom_sharegpt", 12), ("custom_alpaca", 3)):
        s = sources[name]
        assert (s["role"], s["rows_read"], s["rows_kept"], s["rows_used"] + s["eval_rows"]) == ("chat", rows, rows,
                                                                                                 rows)
        assert s["eval_rows"] >= 1  # each source its own eval loss, however small beside the recipe's reasoning
    assert sources["chat"]["share_rows"] == pytest.approx(0.25, abs=0.01)  # the recipe's ratio still holds


def test_a_source_is_named_by_its_file_or_by_the_words_around_its_glob():
    """The names the report and the eval losses (eval_<name>_loss) carry; a glob was named '*'."""
    from kit.config import load_config
    from kit.data.sources import mix_sources

    cfg = load_config(None, ["data.sources=[{path: data/custom_alpaca.jsonl}, {path: data/custom_*.jsonl}, "
                             "{path: data/eval/*.jsonl}, {path: data/eval/*.jsonl}]"])
    assert [name for name, _ in mix_sources(cfg.data)] == ["reasoning", "chat", "custom_alpaca", "custom", "eval",
                                                           "eval5"]


def test_a_source_that_would_give_no_row_is_refused(tiny_tokenizer, smoke_cfg, tmp_path):
    one = tmp_path / "mine.jsonl"
    one.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                            {"role": "assistant", "content": "Hello."}]}) + "\n")
    cfg = smoke_cfg()
    cfg.data.sources = [SourceConfig(path=str(one), share=0.001)]
    with pytest.raises(DataError, match=r"source 'mine' \('.*mine.jsonl'\) gives the mix no row of its 1: its share "
                                        r"0.001 of the mix rounds to 0 rows"):
        _prepare(cfg, tiny_tokenizer)


def test_an_eval_split_larger_than_what_it_leaves_is_refused_and_the_readme_command_trains_every_source(
        tiny_tokenizer):
    """The README's "your data alone" on configs/own-data.yaml (27 rows): its data.eval_rows=24 would leave 4 rows
    to train on, refused with the numbers; with the README's data.eval_rows=6 every source trains."""
    from kit.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "configs" / "own-data.yaml",
                      ["data.chat_ratio=0", 'data.reasoning.path=""'])
    with pytest.raises(DataError, match=r"^the eval split \(data.eval_rows=24\) holds out 23 of the sources' 27 "
                                        r"usable rows, leaving 4 to train on; lower data.eval_rows or add rows.$"):
        _prepare(cfg, tiny_tokenizer)
    cfg.data.eval_rows = 6
    sources = _prepare(cfg, tiny_tokenizer).report["sources"]
    assert sorted(sources) == ["custom_alpaca", "custom_messages", "custom_sharegpt"]
    assert all(s["rows_used"] for s in sources.values())


def test_with_every_source_shared_the_source_that_bounds_the_mix_is_said(tiny_tokenizer):
    from kit.config import load_config

    cfg = load_config(Path(__file__).parent.parent / "configs" / "own-data.yaml", [
        "data.chat_ratio=0", 'data.reasoning.path=""', "data.eval_rows=4", "data.sources=[{path: "
        "data/finetome_sample.jsonl, share: 0.5}, {path: data/custom_sharegpt.jsonl, share: 0.5}]"])
    assert _prepare(cfg, tiny_tokenizer).report["warnings"] == [
        "custom_sharegpt's 12 usable rows at its share 0.5 bound the mix at 20 rows, so finetome_sample gives 10 of "
        "its 298; add custom_sharegpt rows or lower its share to use more."]


def test_a_source_losing_most_of_its_rows_is_said_with_the_fix(tiny_tokenizer, smoke_cfg):
    warnings = _prepare(smoke_cfg("model.max_seq_length=104"), tiny_tokenizer).report["warnings"]
    assert len(warnings) == 1 and re.fullmatch(
        r"source 'reasoning' \(.*\): 1\d\d of its 343 rows were dropped \(43 filtered_held_out, 1\d\d too_long\); a "
        r"higher model.max_seq_length \(or data.overlong=truncate\) keeps the too_long rows.", warnings[0])


def test_a_whole_source_with_no_usable_row_is_refused_with_its_drops(tiny_tokenizer, smoke_cfg):
    """It was trained around in silence: every row of your own file dropped, the mix made of the others."""
    cfg = smoke_cfg()
    cfg.data.sources = [SourceConfig(path=str(Path(__file__).parent.parent / "data" / "custom_messages.jsonl"),
                                     max_chars=5)]
    with pytest.raises(DataError, match=r"^source 'custom_messages' \(.*\) has no usable row: of the 12 read, "
                                        r"dropped 12 filtered_max_chars; filtered_\* rows are the source's filters"):
        _prepare(cfg, tiny_tokenizer)


def test_an_eval_split_taking_much_of_a_small_source_is_said_each_time_the_mix_is_used(tiny_tokenizer, smoke_cfg,
                                                                                       capsys):
    cfg = smoke_cfg("data.chat_ratio=0", "data.reasoning.max_rows=30", "data.eval_rows=12")
    said = "the eval split holds out 12 of its 30 usable rows, leaving 18 to train on; lower data.eval_rows"
    for cached in (False, True):  # prepare, then train: the reused mix says it again
        prepared = _prepare(cfg, tiny_tokenizer)
        assert prepared.cached == cached and prepared.report["mix"]["eval_rows"] == 12
        assert said in capsys.readouterr().out and said in prepared.report["warnings"][0]
