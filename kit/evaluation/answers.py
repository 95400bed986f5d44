"""The final answer of a math reply, and whether it is right: the last `\\boxed{}`, checked with math-verify.

    math_correct("... so the answer is \\boxed{\\frac{1}{2}}", "0.5")   # True

Evaluation (kit.evaluation.scores), the benchmark readers (kit.evaluation.benchmarks) and reward functions all score
through these.
"""

from __future__ import annotations


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces allowed), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed{")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            if depth == 0:
                return text[i:j]
            depth -= 1
    return None


def math_correct(answer: str, expected: str) -> bool:
    """Is the final boxed answer equal to `expected` (symbolically: 1/2, 0.5 and \\frac{1}{2} agree)?"""
    from math_verify import parse, verify

    boxed = last_boxed(answer)
    if boxed is None or not expected.strip():
        return False
    gold = parse(f"${expected}$")
    predicted = parse(f"${boxed}$")
    return bool(gold) and bool(predicted) and verify(gold, predicted)
