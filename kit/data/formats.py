"""One small adapter per source format, each turning a raw row into `[{"role", "content"}, ...]`.

Every problem raises `BadRow`, which names the source, file, row and field, so a user can open the file and fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from kit.config import SourceConfig
from kit.errors import KitError

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
MESSAGE_ROLES = {"user", "assistant", "system"}


class DataError(KitError, ValueError):
    """Input data the kit cannot use (a malformed file, an empty mix)."""


class BadRow(DataError):
    """A row that cannot become a conversation; `reason` is a short key counted in the data report."""

    def __init__(self, reason: str, field: str, detail: str, where: str = ""):
        self.reason, self.field, self.detail, self.where = reason, field, detail, where
        super().__init__(f"{where}: field '{field}': {detail}" if where else f"field '{field}': {detail}")

    def located(self, where: str) -> BadRow:
        return BadRow(self.reason, self.field, self.detail, where)


class Filtered(Exception):
    """A valid row that a configured filter leaves out; `reason` is counted in the data report."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _text(row: dict, key: str) -> str:
    if key not in row or row[key] is None:
        raise BadRow("missing_field", key, "missing")
    value = row[key]
    if not isinstance(value, str):
        raise BadRow("bad_type", key, f"expected text, got {type(value).__name__}")
    if not value.strip():
        raise BadRow("empty_content", key, "empty")
    return value


def check_think(text: str, field: str) -> str:
    """An assistant reply whose `<think>` block, if any, Qwen3's template renders as it was meant: opened and closed
    exactly once, nothing before it (the template would drop it), an answer after it. Raises BadRow otherwise."""
    opened, closed = text.count("<think>"), text.count("</think>")
    if opened == closed == 0:
        return text
    if opened > 1 or closed > 1:
        raise BadRow("several_think_blocks", field, f"{opened} <think> and {closed} </think>; a reply holds one block")
    if closed == 0:
        raise BadRow("unclosed_think", field, "opens <think> but never closes it (a truncated trace?); the model would "
                                              "learn to leave its reasoning open")
    if opened == 0 or text.index("</think>") < text.index("<think>"):
        raise BadRow("think_not_opened", field, "closes </think> without opening <think> first")
    if text[:text.index("<think>")].strip():
        raise BadRow("text_before_think", field, "has text before <think>, which Qwen3's chat template drops")
    if not text[text.index("</think>") + len("</think>"):].strip():
        raise BadRow("no_answer_after_think", field, "ends at </think> with no answer after the reasoning")
    return text


def _check_turns(messages: list[dict], field: str) -> list[dict]:
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRow("no_assistant_turn", field, "no assistant turn to train on")
    if messages[-1]["role"] != "assistant":
        raise BadRow("ends_without_reply", field, f"last turn is '{messages[-1]['role']}', expected an assistant reply")
    return messages


def _pass_rate(row: dict) -> float | None:
    value = row.get("pass_rate_72b_tir")
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # "n/a" (never evaluated) or a revision without the column


def openmath(row: dict, src: SourceConfig) -> list[dict]:
    """nvidia/OpenMathReasoning: user = problem, assistant = generated_solution (its <think> block kept)."""
    problem, solution = _text(row, "problem"), check_think(_text(row, "generated_solution"), "generated_solution")
    if src.problem_types and row.get("problem_type") not in src.problem_types:
        raise Filtered("problem_type")
    rate = _pass_rate(row)
    if rate is not None and not src.min_pass_rate <= rate <= src.max_pass_rate:
        raise Filtered("pass_rate")
    return [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}]


def sharegpt(row: dict, src: SourceConfig) -> list[dict]:
    """FineTome-100k and other ShareGPT rows: `conversations` of `{from, value}`; human/gpt/system roles."""
    key = "conversations" if "conversations" in row else "conversation"
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise BadRow("missing_field", "conversations", "missing or not a non-empty list")
    messages = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRow("bad_type", f"{key}[{i}]", "expected an object with 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn.get("from"))
        if role is None:
            raise BadRow("unknown_role", f"{key}[{i}].from",
                         f"unknown role {turn.get('from')!r} (expected human, gpt or system)")
        content = _text(turn, "value")
        messages.append({"role": role, "content": check_think(content, f"{key}[{i}].value") if role == "assistant"
                         else content})
    return _check_turns(messages, key)


def messages(row: dict, src: SourceConfig) -> list[dict]:
    """OpenAI-style `messages` of `{role, content}` with user/assistant/system roles."""
    turns = row.get("messages")
    if not isinstance(turns, list) or not turns:
        raise BadRow("missing_field", "messages", "missing or not a non-empty list")
    out = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("role") not in MESSAGE_ROLES:
            role = turn.get("role") if isinstance(turn, dict) else turn
            raise BadRow("unknown_role", f"messages[{i}].role",
                         f"unknown role {role!r} (expected user, assistant or system)")
        content = _text(turn, "content")
        message = {"role": turn["role"], "content": check_think(content, f"messages[{i}].content")
                   if turn["role"] == "assistant" else content}
        if turn.get("reasoning_content"):
            message["reasoning_content"] = turn["reasoning_content"]
        out.append(message)
    return _check_turns(out, "messages")


def alpaca(row: dict, src: SourceConfig) -> list[dict]:
    """Alpaca: instruction (+ optional input) -> output, with an optional system prompt."""
    prompt = _text(row, "instruction")
    if isinstance(row.get("input"), str) and row["input"].strip():
        prompt = f"{prompt}\n\n{row['input']}"
    out = [{"role": "system", "content": row["system"]}] if isinstance(row.get("system"), str) and row["system"] else []
    answer = check_think(_text(row, "output"), "output")
    return out + [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]


CONVERTERS: dict[str, Callable[[dict, SourceConfig], list[dict]]] = {
    "openmath": openmath, "sharegpt": sharegpt, "messages": messages, "alpaca": alpaca,
}


def to_messages(row: dict, src: SourceConfig) -> list[dict]:
    """Convert one raw row; raises `BadRow` (invalid) or `Filtered` (left out by a filter)."""
    conversation = CONVERTERS[src.format](row, src)
    if src.max_chars and sum(len(m["content"]) for m in conversation) > src.max_chars:
        raise Filtered("max_chars")
    return conversation
