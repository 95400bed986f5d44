"""Conversations through the tokenizer's own chat template, tokenized, with the assistant parts labelled (-100
elsewhere); which turns are trained are options (docs/data.md). The turns are found from the token ids alone
(`<|im_start|>`/`<|im_end|>` are single tokens), so the tokenizer never computes character offsets, the costly part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TURN_START = "<|im_start|>"  # ChatML markers, shared by every Qwen3 template: single special tokens
TURN_END = "<|im_end|>"
ASSISTANT_HEADER = "assistant\n"  # what follows TURN_START in an assistant turn
EMPTY_THINK = "<think>\n\n</think>\n\n"  # what Qwen3's template gives a final answer without reasoning
IGNORE = -100


@dataclass
class Encoded:
    input_ids: np.ndarray  # int32
    labels: np.ndarray  # int32, IGNORE outside trained spans


def content_chars(conversation: list[dict], train_turns: str) -> tuple[int, int]:
    """Content characters of a conversation and of its trained assistant turns: a row's cost, before tokenizing."""
    sizes = [len(m["content"]) + len(m.get("reasoning_content") or "") for m in conversation]
    answers = [n for n, m in zip(sizes, conversation, strict=True) if m["role"] == "assistant"]
    return sum(sizes), answers[-1] if train_turns == "final" else sum(answers)


def render(tokenizer, conversation: list[dict], **template_kwargs) -> str:
    """The training text of one conversation, by the tokenizer's chat template."""
    return tokenizer.apply_chat_template(conversation, tokenize=False, **template_kwargs)


class Labeller:
    """Which tokens of a rendered conversation are trained, read from its token ids.

    `spans(ids)` gives `[(first, last), ...]` token indices, both inclusive: the assistant parts that
    `train_turns` (final | all) and `train_empty_think` select, each through its `<|im_end|>`.
    """

    def __init__(self, tokenizer, train_turns: str = "final", train_empty_think: bool = False):
        self.turn_start, self.turn_end = tokenizer.convert_tokens_to_ids([TURN_START, TURN_END])
        self.final_only, self.skip_empty_think = train_turns == "final", not train_empty_think
        self._decode = tokenizer.backend_tokenizer.decode
        self._texts: dict[int, str] = {}  # the few ids ever compared: header, think block, an answer's first

    def _text(self, token: int) -> str:
        if token not in self._texts:
            self._texts[token] = self._decode([token], skip_special_tokens=False)
        return self._texts[token]

    def _match(self, ids: np.ndarray, i: int, offset: int, expected: str) -> tuple[int, int] | None:
        """`(token, offset)` where the text from token `i` (`offset` characters in) continues after `expected`, or
        None."""
        while expected:
            if i == len(ids):
                return None
            text = self._text(int(ids[i]))[offset:]
            if expected.startswith(text):  # the token lies inside `expected`
                expected, i, offset = expected[len(text):], i + 1, 0
            elif text.startswith(expected):  # the token runs on past it
                return i, offset + len(expected)
            else:
                return None
        return i, offset

    def spans(self, ids: np.ndarray) -> list[tuple[int, int]]:
        ends = np.flatnonzero(ids == self.turn_end)
        spans, after = [], 0
        for start in np.flatnonzero(ids == self.turn_start):
            if start < after or (body := self._match(ids, start + 1, 0, ASSISTANT_HEADER)) is None:
                continue
            if self.skip_empty_think:
                body = self._match(ids, *body, EMPTY_THINK) or body
            k = np.searchsorted(ends, body[0])
            end = int(ends[k]) if k < len(ends) else len(ids) - 1
            if body[0] <= end:
                spans.append((body[0], end))
            after = end + 1
        return spans[-1:] if self.final_only else spans


def encode_batch(tokenizer, labeller: Labeller, texts: list[str], *, max_length: int,
                 overlong: str) -> list[Encoded | str]:
    """Tokenize texts in one batched call (no offsets); each result is an `Encoded` or the reason it was dropped."""
    backend = tokenizer.backend_tokenizer
    if backend.padding or backend.truncation:  # left by an earlier padded call; `tokenizer(texts)` resets them too
        backend.no_padding()
        backend.no_truncation()
    results: list[Encoded | str] = []
    for encoding in backend.encode_batch_fast(texts, add_special_tokens=False):
        ids = np.array(encoding.ids, dtype=np.int32)
        labels = np.full(len(ids), IGNORE, dtype=np.int32)
        for first, last in labeller.spans(ids):
            labels[first:last + 1] = ids[first:last + 1]
        if len(ids) > max_length:
            if overlong == "drop":
                results.append("too_long")
                continue
            ids, labels = ids[:max_length], labels[:max_length]
        if not (labels != IGNORE).any():
            results.append("nothing_to_train" if len(ids) < max_length else "nothing_to_train_after_truncation")
            continue
        results.append(Encoded(ids, labels))
    return results


def encoder(tokenizer, d, max_length: int, source: str):
    """The function `datasets.Dataset.map` encodes a batch of conversations (JSON text) with: input_ids, labels, the
    source's name, each row's token and trained-token counts, and why a row was dropped ("" when kept)."""
    import json

    labeller = Labeller(tokenizer, d.train_turns, d.train_empty_think)

    def encode(batch: dict) -> dict:
        texts = [render(tokenizer, json.loads(c)) for c in batch["conversation"]]
        out: dict[str, list] = {"input_ids": [], "labels": [], "source": [], "tokens": [], "trained": [],
                                "dropped": []}
        none = np.zeros(0, np.int32)  # a dropped row's (typed, so a batch of them stays int32)
        for e in encode_batch(tokenizer, labeller, texts, max_length=max_length, overlong=d.overlong):
            kept = not isinstance(e, str)
            out["input_ids"].append(e.input_ids if kept else none)
            out["labels"].append(e.labels if kept else none)
            out["tokens"].append(len(e.input_ids) if kept else 0)
            out["trained"].append(int((e.labels != IGNORE).sum()) if kept else 0)
            out["dropped"].append("" if kept else e)
        out["source"] = [source] * len(texts)
        return out

    return encode


def show_row(tokenizer, row: dict, mark: tuple[str, str] = ("⟦", "⟧")) -> str:
    """A prepared row as text, with the trained (labelled) tokens between `mark`s: what the model learns to say."""
    out, inside = [], False
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if (label != IGNORE) != inside:
            out.append(mark[0] if not inside else mark[1])
            inside = not inside
        out.append(tokenizer.decode([token]))
    return "".join(out) + (mark[1] if inside else "")
