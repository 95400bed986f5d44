"""One small converter per source format, each turning a raw row into `[{"role", "content"}, ...]`, and the checks
every row passes. A new format is one converter and its entry in FORMATS; every problem raises `BadRow`, naming the
field (the caller adds source, file and row).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from kit.errors import KitError

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
HELDOUT_KEY = b"qwen3-kit held-out v1"  # changing it moves every problem: a new held-out slice


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


def _text(row: dict, key: str, field: str = "") -> str:
    """`row[key]` as non-empty text; `field` names it in the error (a turn's: `messages[1].content`)."""
    field = field or key
    if key not in row or row[key] is None:
        raise BadRow("missing_field", field, "missing")
    if not isinstance(row[key], str):
        raise BadRow("bad_type", field, f"expected text, got {type(row[key]).__name__}")
    if not row[key].strip():
        raise BadRow("empty_content", field, "empty")
    return row[key]


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


def _turns(messages: list[dict], field: str) -> list[dict]:
    if not any(m["role"] == "assistant" for m in messages):
        raise BadRow("no_assistant_turn", field, "no assistant turn to train on")
    if messages[-1]["role"] != "assistant":
        raise BadRow("ends_without_reply", field, f"last turn is '{messages[-1]['role']}', expected an assistant reply")
    return messages


def _list(row: dict, key: str, what: str) -> list:
    if not isinstance(row.get(key), list) or not row[key]:
        raise BadRow("missing_field", key, f"missing or not a non-empty list of {what}")
    return row[key]


def openmath(row: dict, src) -> list[dict]:
    """nvidia/OpenMathReasoning: user = problem, assistant = generated_solution (its <think> block kept)."""
    problem, solution = _text(row, "problem"), check_think(_text(row, "generated_solution"), "generated_solution")
    if src.problem_types and row.get("problem_type") not in src.problem_types:
        raise Filtered("problem_type")
    try:
        rate = float(row.get("pass_rate_72b_tir"))
    except (TypeError, ValueError):
        rate = None  # "n/a" (never evaluated) or a revision without the column
    if rate is not None and not src.min_pass_rate <= rate <= src.max_pass_rate:
        raise Filtered("pass_rate")
    return [{"role": "user", "content": problem}, {"role": "assistant", "content": solution}]


def sharegpt(row: dict, src) -> list[dict]:
    """FineTome-100k and other ShareGPT rows: `conversations` of `{from, value}` (or, as many sets write them,
    `{role, content}`); human/gpt/system roles, or user/assistant/system."""
    key = "conversation" if "conversation" in row and "conversations" not in row else "conversations"
    messages = []
    for i, turn in enumerate(_list(row, key, "turns")):
        if not isinstance(turn, dict):
            raise BadRow("bad_type", f"{key}[{i}]", "expected an object with 'from' and 'value'")
        who, text = ("role", "content") if "from" not in turn and "role" in turn else ("from", "value")
        role = SHAREGPT_ROLES.get(turn.get(who))
        if role is None:
            raise BadRow("unknown_role" if who in turn else "missing_field", f"{key}[{i}].{who}",
                         f"unknown role {turn.get(who)!r} (expected human, gpt or system)" if who in turn else
                         "missing (a turn is {from, value} or {role, content})")
        content = _text(turn, text, f"{key}[{i}].{text}")
        messages.append({"role": role, "content": check_think(content, f"{key}[{i}].{text}") if role == "assistant"
                         else content})
    return _turns(messages, key)


def messages(row: dict, src) -> list[dict]:
    """OpenAI-style `messages` of `{role, content}` (user, assistant, system); an assistant's reasoning_content kept."""
    out = []
    for i, turn in enumerate(_list(row, "messages", "turns")):
        role = turn.get("role") if isinstance(turn, dict) else turn
        if role not in ("user", "assistant", "system"):
            raise BadRow("unknown_role", f"messages[{i}].role",
                         f"unknown role {role!r} (expected user, assistant or system)")
        content = _text(turn, "content", f"messages[{i}].content")
        message = {"role": role, "content": check_think(content, f"messages[{i}].content") if role == "assistant"
                   else content}
        if turn.get("reasoning_content"):
            message["reasoning_content"] = turn["reasoning_content"]
        out.append(message)
    return _turns(out, "messages")


def alpaca(row: dict, src) -> list[dict]:
    """Alpaca: instruction (+ optional input) -> output, with an optional system prompt."""
    prompt = _text(row, "instruction")
    if isinstance(row.get("input"), str) and row["input"].strip():
        prompt = f"{prompt}\n\n{row['input']}"
    system = [{"role": "system", "content": row["system"]}] if isinstance(row.get("system"), str) and row["system"] \
        else []
    return system + [{"role": "user", "content": prompt},
                     {"role": "assistant", "content": check_think(_text(row, "output"), "output")}]


# format -> (converter, the fields that say a row is in it)
FORMATS: dict[str, tuple[Callable[[dict, object], list[dict]], tuple[str, ...]]] = {
    "openmath": (openmath, ("problem", "generated_solution")),
    "messages": (messages, ("messages",)),
    "sharegpt": (sharegpt, ("conversations",)),
    "alpaca": (alpaca, ("instruction", "output")),
}


def detect(row: dict) -> str | None:
    """The format a row's fields say it is in (`conversation` counts as ShareGPT's `conversations`), or None."""
    keys = set(row) | ({"conversations"} if "conversation" in row else set())
    return next((name for name, (_, needed) in FORMATS.items() if set(needed) <= keys), None)


def problem_text(conversation: list[dict]) -> str:
    """The first user turn, whitespace-normalised: what identifies a problem."""
    return " ".join(next((m["content"] for m in conversation if m["role"] == "user"), "").split())


def held_out(conversation: list[dict], share: float) -> bool:
    """Is this problem in the held-out `share` (0..1)? A keyed hash of its text decides: the same in every process
    and row order, and every copy of a problem lands on the same side, so eval never scores what was trained on."""
    if share <= 0:
        return False
    digest = hashlib.blake2b(problem_text(conversation).encode(), digest_size=8, key=HELDOUT_KEY).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def to_messages(row: dict, src, fmt: str | None = None) -> list[dict]:
    """One raw row in format `fmt` as messages; raises `BadRow`, or `Filtered` (left out by a filter, or held out)."""
    fmt = fmt or src.format
    found = detect(row)
    if fmt == "auto" and found is None:
        raise BadRow("unknown_format", ", ".join(sorted(row)[:6]) or "(none)", "no known format has these fields ("
                     + "; ".join(f"{name}: {', '.join(keys)}" for name, (_, keys) in FORMATS.items()) + ")")
    if fmt != "auto" and found not in (None, fmt) and not set(FORMATS[fmt][1]) <= set(row):
        fix = f"the source's first row was {fmt}, and a source holds one format: give each format its own source" \
            if src.format == "auto" else f"set the source's format to {found} (or auto)"
        raise BadRow("wrong_format", ", ".join(FORMATS[found][1]), f"this row is in the {found} format, not "
                     f"{fmt}: {fix}")
    conversation = FORMATS[found if fmt == "auto" else fmt][0](row, src)
    if src.max_chars and sum(len(m["content"]) for m in conversation) > src.max_chars:
        raise Filtered("max_chars")
    if held_out(conversation, src.heldout):
        raise Filtered("held_out")
    return conversation
