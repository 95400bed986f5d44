"""Did math improve, and did chat and the thinking switch survive? Compare a base and a tuned model.

    report = evaluate(generator, math_rows, chat_prompts)         # one model
    table = compare({"base": base_report, "tuned": tuned_report})

A generator is any `fn(conversations, thinking) -> list[Reply]` (`kit.infer.generate` bound to a model, or a
faster engine), so the scoring below is the same whatever produced the text.
- math: the last `\\boxed{}` of the answer checked against `expected_answer` with math-verify (1/2 == 0.5);
- switch: thinking on must give a closed, non-empty think block and an answer; thinking off an answer with no
  reasoning leaking into it (no `<think>`/`</think>`, nothing that reads as an opened trace);
- chat: non-empty answers, no runaway repetition, answer length.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kit.infer import Reply

Generator = Callable[[list[list[dict]], bool], list[Reply]]
THINK_TAGS = ("<think>", "</think>")


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


def repetition(text: str, n: int = 4) -> float:
    """Share of repeated word n-grams: 0 for varied text, near 1 for a model stuck in a loop."""
    words = text.split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def switch_ok(on: Reply, off: Reply) -> tuple[bool, bool]:
    """(thinking-on reply is right, thinking-off reply is right)."""
    on_ok = on.closed and bool(on.reasoning.strip()) and bool(on.answer.strip())
    off_ok = (not off.reasoning and bool(off.answer.strip())
              and not any(tag in off.text for tag in THINK_TAGS))
    return on_ok, off_ok


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def evaluate(generate: Generator, math_rows: list[dict], chat_prompts: list[list[dict]],
             repetition_limit: float = 0.5) -> dict:
    """Score one model. `math_rows` need `problem` and `expected_answer`; `chat_prompts` are conversations
    ending with a user turn. Returns the shares passing each check and per-prompt details."""
    math_prompts = [[{"role": "user", "content": r["problem"]}] for r in math_rows]
    on = generate(math_prompts, True) if math_prompts else []
    off = generate(math_prompts, False) if math_prompts else []
    chat = generate(chat_prompts, False) if chat_prompts else []
    correct = [math_correct(r.answer, row["expected_answer"]) for r, row in zip(on, math_rows, strict=True)]
    switch = [switch_ok(a, b) for a, b in zip(on, off, strict=True)]
    reps = [repetition(r.answer) for r in chat]
    return {
        "math_accuracy": _share(correct),
        "switch_thinking_on_ok": _share([s[0] for s in switch]),
        "switch_thinking_off_ok": _share([s[1] for s in switch]),
        "chat_nonempty": _share([bool(r.answer.strip()) for r in chat]),
        "chat_no_runaway_repetition": _share([x <= repetition_limit for x in reps]),
        "chat_mean_answer_words": round(sum(len(r.answer.split()) for r in chat) / len(chat), 1) if chat else None,
        "n_math": len(math_rows), "n_chat": len(chat_prompts),
        "details": {"math": [{"problem": row["problem"], "expected": row["expected_answer"], "answer": r.answer,
                              "correct": c} for row, r, c in zip(math_rows, on, correct, strict=True)],
                    "chat": [{"prompt": p[-1]["content"], "answer": r.answer} for p, r in
                             zip(chat_prompts, chat, strict=True)]},
    }


METRICS = ["math_accuracy", "switch_thinking_on_ok", "switch_thinking_off_ok", "chat_nonempty",
           "chat_no_runaway_repetition", "chat_mean_answer_words"]


def compare(reports: dict[str, dict]) -> str:
    """A side-by-side table of several models' reports (e.g. base and tuned)."""
    names = list(reports)
    lines = [f"{'metric':<30}" + "".join(f"{n:>12}" for n in names), "-" * (30 + 12 * len(names))]
    for metric in METRICS:
        cells = []
        for n in names:
            value = reports[n][metric]
            cells.append(f"{'-':>12}" if value is None else f"{value:>12.3f}" if isinstance(value, float)
                         else f"{value:>12}")
        lines.append(f"{metric:<30}" + "".join(cells))
    return "\n".join(lines)


def load_eval_rows(math_path: str, chat_path: str, n_math: int, n_chat: int) -> tuple[list[dict], list[list[dict]]]:
    """Held-out math rows with answers (OpenMathReasoning schema) and chat prompts (ShareGPT: the conversation up
    to its last user turn)."""
    import pyarrow.parquet as pq

    from kit.config import SourceConfig
    from kit.data.formats import sharegpt

    math = [r for r in pq.read_table(math_path).to_pylist() if (r.get("expected_answer") or "").strip()][:n_math]
    prompts = []
    for line in Path(chat_path).read_text(encoding="utf-8").splitlines()[:n_chat]:
        conversation = sharegpt(json.loads(line), SourceConfig(format="sharegpt", path=chat_path))
        last_user = max(i for i, m in enumerate(conversation) if m["role"] == "user")
        prompts.append(conversation[:last_user + 1])
    return math, prompts



def model_generator(model, tokenizer, max_new_tokens: int, seed: int = 0) -> Generator:
    """A generator over a loaded model: `kit.infer.generate` with a fixed seed and token budget."""
    from kit.infer import generate

    def run(conversations: list[list[dict]], thinking: bool) -> list[Reply]:
        return generate(model, tokenizer, conversations, thinking=thinking, max_new_tokens=max_new_tokens, seed=seed)

    return run


def evaluate_run(run_dir: str | Path, cfg) -> dict[str, dict]:
    """Evaluate the base model and the run's tuned adapter on the held-out sets of `cfg.eval`; write eval.json."""
    from kit.hub import resolve_model
    from kit.infer import load_for_inference

    run_dir = Path(run_dir)
    math, chat = load_eval_rows(cfg.eval.math_path, cfg.eval.chat_path, cfg.eval.n_math, cfg.eval.n_chat)
    reports = {}
    base_dir = resolve_model(cfg.model)
    for name, path, base in (("base", base_dir, None), ("tuned", run_dir / "adapter", base_dir)):
        model, tokenizer = load_for_inference(path, base=base, backend=cfg.train.backend,
                                              load_in_4bit=cfg.model.load_in_4bit)
        reports[name] = evaluate(model_generator(model, tokenizer, cfg.eval.max_new_tokens, cfg.eval.seed),
                                 math, chat)
        del model
    (run_dir / "eval.json").write_text(json.dumps(reports, indent=2, ensure_ascii=False))
    return reports
