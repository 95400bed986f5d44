"""Render conversations with the tokenizer's own chat template, tokenize them, and label the assistant parts.

The text is exactly `tokenizer.apply_chat_template(messages, tokenize=False)`; labels are the token ids inside
assistant turns (from after `<|im_start|>assistant\\n` through `<|im_end|>`) and -100 everywhere else.
Which turns are trained, and whether a chat row's empty `<think>\\n\\n</think>\\n\\n` is, are options
(`data.train_turns`, `data.train_empty_think`); docs/data.md explains the defaults.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESPONSE_START = "<|im_start|>assistant\n"  # ChatML markers, shared by every Qwen3 template
TURN_END = "<|im_end|>"
EMPTY_THINK = "<think>\n\n</think>\n\n"  # what Qwen3's template gives a final answer without reasoning
IGNORE = -100


@dataclass
class Encoded:
    input_ids: np.ndarray  # int32
    labels: np.ndarray  # int32, IGNORE outside trained spans


def render(tokenizer, conversation: list[dict], **template_kwargs) -> str:
    """The training text of one conversation, by the tokenizer's chat template."""
    return tokenizer.apply_chat_template(conversation, tokenize=False, **template_kwargs)


def trained_spans(text: str, train_turns: str = "final", train_empty_think: bool = False) -> list[tuple[int, int]]:
    """Character spans of the assistant parts to train: `[(start, end), ...]`, end exclusive, `<|im_end|>` included."""
    spans = []
    pos = 0
    while (start := text.find(RESPONSE_START, pos)) != -1:
        body = start + len(RESPONSE_START)
        end = text.find(TURN_END, body)
        end = len(text) if end == -1 else end + len(TURN_END)
        if not train_empty_think and text.startswith(EMPTY_THINK, body):
            body += len(EMPTY_THINK)
        if end > body:
            spans.append((body, end))
        pos = end
    return spans[-1:] if train_turns == "final" else spans


def encode_batch(tokenizer, texts: list[str], *, max_length: int, overlong: str, train_turns: str,
                 train_empty_think: bool) -> list[Encoded | str]:
    """Tokenize texts in one batched call; each result is an `Encoded` or the reason it was dropped."""
    batch = tokenizer(texts, add_special_tokens=False)
    results: list[Encoded | str] = []
    for i, text in enumerate(texts):
        ids = np.asarray(batch["input_ids"][i], dtype=np.int32)
        mask = np.zeros(len(ids), dtype=bool)
        for start, end in trained_spans(text, train_turns, train_empty_think):
            first, last = batch.char_to_token(i, start), batch.char_to_token(i, end - 1)
            mask[first:last + 1] = True
        if len(ids) > max_length:
            if overlong == "drop":
                results.append("too_long")
                continue
            ids, mask = ids[:max_length], mask[:max_length]
        if not mask.any():
            results.append("nothing_to_train" if len(ids) < max_length else "nothing_to_train_after_truncation")
            continue
        results.append(Encoded(ids, np.where(mask, ids, IGNORE).astype(np.int32)))
    return results


def show_row(tokenizer, row: dict, mark: tuple[str, str] = ("⟦", "⟧")) -> str:
    """A prepared row as text, with the trained (labelled) tokens between `mark`s: what the model learns to say."""
    out, inside = [], False
    for token, label in zip(row["input_ids"], row["labels"], strict=True):
        if (label != IGNORE) != inside:
            out.append(mark[0] if not inside else mark[1])
            inside = not inside
        out.append(tokenizer.decode([token]))
    return "".join(out) + (mark[1] if inside else "")
