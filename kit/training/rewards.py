"""What GRPO rewards: each a function TRL calls on a batch of completions, logged on its own as `rewards/<name>/mean`.

    functions, weights = reward_functions(cfg.grpo, tokenizer)   # GRPOTrainer's reward_funcs, GRPOConfig's weights
    correct(text, "7"), well_formed(text, thinking=True)            # one decoded completion

A completion is decoded from its token ids as the kit's generation decodes it (special tokens dropped, `<think>`
kept) and split as kit.inference.generate.split_reasoning splits it, so a reward scores exactly what `qwen3-kit eval`
scores:
- `correct`: the last `\\boxed{}` of the answer (after `</think>`) equals `expected_answer`
  (kit.evaluation.answers.math_correct, math-verify: 1/2 == 0.5); a trace cut off before `</think>` has no answer, so
  it is never correct;
- `well_formed`: thinking on, exactly one closed, non-empty think block with nothing before it, then an answer
  (kit.data.formats.check_think, the shape SFT trains); thinking off, an answer with no think tag in it;
- `length` (optional): minus the share of `grpo.max_completion_length` used, for shorter reasoning.
"""

from __future__ import annotations

from collections.abc import Callable

from kit.data.formats import BadRow, check_think
from kit.evaluation.answers import math_correct
from kit.evaluation.scores import THINK_TAGS
from kit.inference.generate import split_reasoning


def correct(text: str, expected: str) -> bool:
    """Is the last boxed answer after the reasoning equal to `expected`? (An unclosed trace has no answer.)"""
    return math_correct(split_reasoning(text).answer, expected)


def well_formed(text: str, thinking: bool) -> bool:
    """Thinking on: one closed, non-empty think block, nothing before it, an answer after it. Off: an answer with no
    think tag."""
    if not thinking:
        return bool(text.strip()) and not any(tag in text for tag in THINK_TAGS)
    try:
        check_think(text.strip(), "completion")
    except BadRow:
        return False
    return text.count("<think>") == 1 and bool(split_reasoning(text).reasoning)


def reward_functions(g, tokenizer) -> tuple[list[Callable], list[float]]:
    """The rewards `g` (the config's grpo section) weighs above 0, as TRL reward functions, and their weights."""

    def texts(completion_ids) -> list[str]:
        return tokenizer.batch_decode(completion_ids, skip_special_tokens=True)

    def correct_answer(completion_ids, expected_answer, **_) -> list[float]:
        return [float(correct(t, e)) for t, e in zip(texts(completion_ids), expected_answer, strict=True)]

    def format_kept(completion_ids, **_) -> list[float]:
        return [float(well_formed(t, g.thinking)) for t in texts(completion_ids)]

    def length(completion_ids, **_) -> list[float]:
        return [-len(ids) / g.max_completion_length for ids in completion_ids]

    # TRL logs each as rewards/<__name__>/mean
    correct_answer.__name__, format_kept.__name__ = "correct", "format"
    chosen = [(f, w) for f, w in ((correct_answer, g.correct_weight), (format_kept, g.format_weight),
                                  (length, g.length_weight)) if w > 0]
    return [f for f, _ in chosen], [w for _, w in chosen]
