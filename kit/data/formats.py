"""One small adapter per source format, each turning a raw row into `[{"role", "content"}, ...]`.

Every problem raises `BadRow`, which names the source, file, row and field, so a user can open the file and fix it.
"""

from __future__ import annotations

from collections.abc import Callable

from kit.config import SourceConfig
from kit.data.heldout import held_out
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
    problem, solution = _text(row, "problem"), _text(row, "generated_solution")
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
        messages.append({"role": role, "content": _text(turn, "value")})
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
        message = {"role": turn["role"], "content": _text(turn, "content")}
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
    return out + [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row, "output")}]


CONVERTERS: dict[str, Callable[[dict, SourceConfig], list[dict]]] = {
    "openmath": openmath, "sharegpt": sharegpt, "messages": messages, "alpaca": alpaca,
}


def to_messages(row: dict, src: SourceConfig) -> list[dict]:
    """Convert one raw row; raises `BadRow` (invalid) or `Filtered` (left out by a filter, or held out for eval)."""
    conversation = CONVERTERS[src.format](row, src)
    if src.max_chars and sum(len(m["content"]) for m in conversation) > src.max_chars:
        raise Filtered("max_chars")
    if held_out(conversation, src.heldout):
        raise Filtered("held_out")
    return conversation
