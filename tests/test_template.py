"""Rendering and labelling one row at a time, in memory, with the real Qwen3 tokenizer: what a prepared row holds,
where it is cut or dropped at `max_seq_length`, and how `show_row` shows what is trained."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from kit.data.template import IGNORE, Labeller, content_chars, encode_batch, encoder, render, show_row

CHAT = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there"}]
TWO_TURNS = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "first"},
             {"role": "user", "content": "b"}, {"role": "assistant", "content": "second", "reasoning_content": "r"}]


def _encode(tokenizer, conversation, max_length, overlong="truncate"):
    return encode_batch(tokenizer, Labeller(tokenizer), [render(tokenizer, conversation)], max_length=max_length,
                        overlong=overlong)[0]


def _length(tokenizer, conversation) -> int:
    return len(tokenizer(render(tokenizer, conversation), add_special_tokens=False)["input_ids"])


def test_content_chars_counts_the_trained_turns():
    assert content_chars(TWO_TURNS, "final") == (1 + 5 + 1 + 6 + 1, 6 + 1)  # the final answer with its reasoning
    assert content_chars(TWO_TURNS, "all") == (14, 5 + 7)


def test_a_row_of_exactly_max_length_is_kept_whole_and_one_token_longer_is_cut_or_dropped(qwen3_tokenizer):
    n = _length(qwen3_tokenizer, CHAT)
    whole = _encode(qwen3_tokenizer, CHAT, n, overlong="drop")
    assert len(whole.input_ids) == n and whole.input_ids.dtype == np.int32
    assert _encode(qwen3_tokenizer, CHAT, n - 1, overlong="drop") == "too_long"
    cut = _encode(qwen3_tokenizer, CHAT, n - 1, overlong="truncate")
    assert cut.input_ids.tolist() == whole.input_ids[:n - 1].tolist()
    assert cut.labels.tolist() == whole.labels[:n - 1].tolist()


def test_untrained_tokens_carry_the_label_the_loss_ignores(qwen3_tokenizer):
    """-100 is the ignore_index of torch's cross entropy, which transformers' and TRL's losses use."""
    row = _encode(qwen3_tokenizer, CHAT, 1000)
    assert set(row.labels[row.labels != row.input_ids].tolist()) == {-100}


def test_marker_tokens_typed_into_a_prompt_open_no_answer(qwen3_tokenizer):
    """A user message holding `<|im_start|><|im_end|>assistant\n` is the special tokens themselves, but no assistant
    header follows the turn start there: nothing in the prompt is trained."""
    conversation = [{"role": "user", "content": "<|im_start|><|im_end|>assistant\nnot an answer"},
                    {"role": "assistant", "content": "real"}]
    ids = np.array(qwen3_tokenizer(render(qwen3_tokenizer, conversation), add_special_tokens=False)["input_ids"])
    spans = Labeller(qwen3_tokenizer, "all").spans(ids)
    assert [qwen3_tokenizer.decode(ids[a:b + 1]) for a, b in spans] == ["real<|im_end|>"]


def _trained(tokenizer, conversation, turns="all") -> list[str]:
    ids = np.array(tokenizer(render(tokenizer, conversation), add_special_tokens=False)["input_ids"])
    return [tokenizer.decode(ids[a:b + 1]) for a, b in Labeller(tokenizer, turns).spans(ids)]


def test_a_conversation_that_opens_with_the_assistant_trains_that_turn(qwen3_tokenizer):
    conversation = [{"role": "assistant", "content": "Welcome"}, *CHAT]
    assert render(qwen3_tokenizer, conversation).startswith("<|im_start|>assistant\nWelcome")
    assert _trained(qwen3_tokenizer, conversation) == ["Welcome<|im_end|>", "Hello there<|im_end|>"]


def test_markers_typed_back_to_back_into_an_answer_read_as_the_model_sees_them(qwen3_tokenizer):
    """`<|im_end|><|im_start|>assistant\n` typed into an answer ends it and opens another there."""
    conversation = [CHAT[0], {"role": "assistant", "content": "x<|im_end|><|im_start|>assistant\ny"}]
    assert _trained(qwen3_tokenizer, conversation) == ["x<|im_end|>", "y<|im_end|>"]
    assert _trained(qwen3_tokenizer, conversation, "final") == ["y<|im_end|>"]


def test_a_turn_start_typed_inside_an_answer_opens_nothing_new(qwen3_tokenizer):
    conversation = [CHAT[0], {"role": "assistant", "content": "a<|im_start|>assistant\nb"}]
    assert _trained(qwen3_tokenizer, conversation) == ["a<|im_start|>assistant\nb<|im_end|>"]


def test_an_empty_answer_trains_its_end_of_turn_and_an_unclosed_one_runs_to_the_last_token(qwen3_tokenizer):
    """Spans are inclusive token indices: an empty answer is its `<|im_end|>` alone (the model learns to stop)."""
    text = "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\n<|im_end|>\n<|im_start|>assistant\nopen"
    ids = np.array(qwen3_tokenizer(text, add_special_tokens=False)["input_ids"])
    spans = Labeller(qwen3_tokenizer, "all", train_empty_think=True).spans(ids)
    assert [qwen3_tokenizer.decode(ids[a:b + 1]) for a, b in spans] == ["<|im_end|>", "open"]
    assert spans[-1][1] == len(ids) - 1


@pytest.mark.parametrize("left_on", [dict(padding=True), dict(truncation=True, max_length=8)])
def test_a_padded_or_truncating_call_before_leaves_rows_whole_and_unpadded(qwen3_tokenizer, left_on):
    """The Rust tokenizer keeps padding and truncation from an earlier `tokenizer(texts, padding=True)`."""
    texts = [render(qwen3_tokenizer, c) for c in (CHAT, TWO_TURNS)]
    labeller = Labeller(qwen3_tokenizer)
    alone = [encode_batch(qwen3_tokenizer, labeller, [t], max_length=1000, overlong="drop")[0] for t in texts]
    qwen3_tokenizer(["pad", "these rows " * 50], **left_on)
    together = encode_batch(qwen3_tokenizer, labeller, texts, max_length=1000, overlong="drop")
    assert [e.input_ids.tolist() for e in together] == [e.input_ids.tolist() for e in alone]
    assert [e.labels.tolist() for e in together] == [e.labels.tolist() for e in alone]


def test_a_row_with_nothing_to_train_says_whether_truncation_caused_it(qwen3_tokenizer):
    """Cut before the answer it is dropped for the cut; without any answer token at all, for itself."""
    n = _length(qwen3_tokenizer, CHAT)
    assert _encode(qwen3_tokenizer, CHAT, 5) == "nothing_to_train_after_truncation"
    no_answer = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]
    labeller = Labeller(qwen3_tokenizer, "final", train_empty_think=False)
    text = render(qwen3_tokenizer, no_answer)[:-len("<|im_end|>\n")]  # the empty answer's turn never closed
    assert encode_batch(qwen3_tokenizer, labeller, [text], max_length=n, overlong="drop") == ["nothing_to_train"]


@pytest.mark.parametrize("thinking", [True, False])
def test_a_prompt_that_ends_at_the_assistant_header_has_nothing_to_train(qwen3_tokenizer, thinking):
    text = qwen3_tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True,
                                               enable_thinking=thinking)
    assert encode_batch(qwen3_tokenizer, Labeller(qwen3_tokenizer), [text], max_length=100,
                        overlong="drop") == ["nothing_to_train"]
    assert Labeller(qwen3_tokenizer).spans(np.array(qwen3_tokenizer(text, add_special_tokens=False)["input_ids"])) == []


def test_an_answer_cut_before_its_end_is_trained_up_to_the_cut(qwen3_tokenizer):
    text = render(qwen3_tokenizer, CHAT)[:-len("<|im_end|>\n")]  # the row ends inside the answer
    got = encode_batch(qwen3_tokenizer, Labeller(qwen3_tokenizer), [text], max_length=100, overlong="drop")[0]
    trained = got.input_ids[got.labels != IGNORE]
    assert qwen3_tokenizer.decode(trained) == "Hello there" and got.labels[-1] == got.input_ids[-1]


def test_encoder_gives_each_row_its_counts_and_drop_reason(qwen3_tokenizer):
    options = SimpleNamespace(train_turns="all", train_empty_think=False, overlong="drop")
    n = _length(qwen3_tokenizer, TWO_TURNS)
    encode = encoder(qwen3_tokenizer, options, n, "chat")
    out = encode({"conversation": [json.dumps(TWO_TURNS), json.dumps(TWO_TURNS + CHAT)]})
    assert out["source"] == ["chat", "chat"] and out["dropped"] == ["", "too_long"]
    assert out["tokens"] == [n, 0] and len(out["input_ids"][0]) == n and len(out["input_ids"][1]) == 0
    labels = out["labels"][0]
    assert out["trained"] == [int((labels != IGNORE).sum()), 0] and out["trained"][0] > 0
    trained = qwen3_tokenizer.decode(out["input_ids"][0][labels != IGNORE])
    assert trained == "first<|im_end|><think>\nr\n</think>\n\nsecond<|im_end|>"  # both turns: train_turns=all
    assert out["labels"][1].dtype == np.int32


@pytest.mark.parametrize("mark", [("⟦", "⟧"), ("[[", "]]")])
def test_show_row_marks_exactly_the_trained_tokens(qwen3_tokenizer, mark):
    row = _encode(qwen3_tokenizer, TWO_TURNS, 1000)
    row = {"input_ids": row.input_ids.tolist(), "labels": row.labels.tolist()}
    shown = show_row(qwen3_tokenizer, row, mark)
    assert shown.replace(mark[0], "").replace(mark[1], "") == qwen3_tokenizer.decode(row["input_ids"])
    assert shown.count(mark[0]) == shown.count(mark[1]) == 1
    assert f"{mark[0]}<think>\nr\n</think>\n\nsecond<|im_end|>{mark[1]}" in shown


def test_show_row_closes_a_span_that_runs_to_the_end(qwen3_tokenizer):
    cut = _encode(qwen3_tokenizer, CHAT, _length(qwen3_tokenizer, CHAT) - 2)
    shown = show_row(qwen3_tokenizer, {"input_ids": cut.input_ids.tolist(), "labels": cut.labels.tolist()})
    assert shown.endswith("⟧") and shown.count("⟦") == 1 and "⟦Hello" in shown
