"""Instruction following, checked by code (IFEval-style). Each line of the file is `{"id", "prompt", "checks":
[{"check": "<name>", ...}]}`; checks read the answer only (after `</think>`); each Chinese character counts as a word.
"""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from kit.data.formats import DataError

HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
LATIN = re.compile(r"[A-Za-z]")
WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[^\W\d_\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|\d+")
BULLET = re.compile(r"^\s*[-*•]\s+\S", re.MULTILINE)
NUMBERED = re.compile(r"^\s*\d+[.)、]\s*\S", re.MULTILINE)
FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def word_count(text: str) -> int:
    return len(WORD.findall(text))


def max_words(answer: str, n: int) -> bool:
    return word_count(answer) <= n


def min_words(answer: str, n: int) -> bool:
    return word_count(answer) >= n


def include(answer: str, words: list[str]) -> bool:
    return all(w.lower() in answer.lower() for w in words)


def exclude(answer: str, words: list[str]) -> bool:
    return not any(w.lower() in answer.lower() for w in words)


def frequency(answer: str, word: str, n: int) -> bool:
    return answer.lower().count(word.lower()) >= n


def bullets(answer: str, n: int) -> bool:
    """Exactly n markdown bullet points (`- `, `* ` or `• `)."""
    return len(BULLET.findall(answer)) == n


def numbered(answer: str, n: int) -> bool:
    """Exactly n numbered items (`1.`, `2)`, `3、`)."""
    return len(NUMBERED.findall(answer)) == n


def paragraphs(answer: str, n: int) -> bool:
    """Exactly n paragraphs, separated by blank lines."""
    return len([p for p in re.split(r"\n\s*\n", answer.strip()) if p.strip()]) == n


def in_chinese(answer: str) -> bool:
    """Mostly Chinese characters (English terms allowed): a character carries about as much as a short word."""
    han = len(HAN.findall(answer))
    return han > 0 and han >= len(LATIN.findall(answer)) / 4


def in_english(answer: str) -> bool:
    return bool(LATIN.search(answer)) and not HAN.search(answer)


def json_object(answer: str, keys: list[str] = ()) -> bool:
    """The whole answer is one JSON object (a ```json fence around it is allowed) holding `keys`."""
    text = answer.strip()
    fenced = FENCE.match(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and all(k in value for k in keys)


def lowercase(answer: str) -> bool:
    return bool(LATIN.search(answer)) and answer == answer.lower()


def uppercase(answer: str) -> bool:
    return bool(LATIN.search(answer)) and answer == answer.upper()


def no_commas(answer: str) -> bool:
    return "," not in answer and "，" not in answer


def starts_with(answer: str, text: str) -> bool:
    return answer.strip().startswith(text)


def ends_with(answer: str, text: str) -> bool:
    return answer.strip().endswith(text)


def quoted(answer: str) -> bool:
    text = answer.strip()
    return len(text) > 1 and text[0] == text[-1] == '"'


def title(answer: str) -> bool:
    """A title in double angular brackets, `<<like this>>`."""
    return re.search(r"<<[^<>\n]+>>", answer) is not None


def placeholders(answer: str, n: int) -> bool:
    """At least n placeholders in square brackets, `[name]`."""
    return len(re.findall(r"\[[^\[\]\n]+\]", answer)) >= n


CHECKS = {f.__name__: f for f in (max_words, min_words, include, exclude, frequency, bullets, numbered, paragraphs,
                                  in_chinese, in_english, json_object, lowercase, uppercase, no_commas, starts_with,
                                  ends_with, quoted, title, placeholders)}


@dataclass
class Instruction:
    id: str
    prompt: str
    checks: list[dict]  # each {"check": name, **arguments}


def follows(item: Instruction, answer: str) -> list[bool]:
    """One result per check of the prompt: did the answer keep that instruction? An empty answer keeps none."""
    if not answer.strip():
        return [False] * len(item.checks)
    return [CHECKS[c["check"]](answer, **{k: v for k, v in c.items() if k != "check"}) for c in item.checks]


def _fits(value, kind) -> bool:
    """Whether a check's argument is of its annotated type (int, str, list[str]); a bool is not an int here."""
    if typing.get_origin(kind) is list:
        return isinstance(value, list) and all(_fits(v, typing.get_args(kind)[0]) for v in value)
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _check_spec(spec, where: str) -> None:
    """A check's name and its arguments' names and types, checked when the file loads: before any generation."""
    name = spec.get("check") if isinstance(spec, dict) else None
    if name not in CHECKS:
        raise DataError(f"{where}: unknown check {name!r}; known: {', '.join(CHECKS)}.")
    arguments = {k: v for k, v in spec.items() if k != "check"}
    try:
        inspect.signature(CHECKS[name]).bind("", **arguments)
    except TypeError:
        wanted = [p for p in inspect.signature(CHECKS[name]).parameters if p != "answer"]
        raise DataError(f"{where}: check '{name}' takes {wanted or 'no arguments'}, got {sorted(arguments)}.") from None
    types = typing.get_type_hints(CHECKS[name])
    for key, value in arguments.items():
        if not _fits(value, types[key]):
            kind = {int: "a whole number", str: "text"}.get(types[key], "a list of text")
            raise DataError(f"{where}: check '{name}' argument '{key}' must be {kind}, got {value!r}.")


def load_instructions(path: str | Path, n: int = 0) -> list[Instruction]:
    """The prompts of a JSONL file (the first n; 0 = all), each check validated against the vocabulary."""
    from kit.data.sources import MalformedRow, read_files

    items = []
    try:
        rows = list(read_files([Path(path)]))  # the training data's reader: a byte-order mark, UTF-8 and JSON checked
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror}).") from None
    for raw in rows:
        if isinstance(raw, MalformedRow):
            raise DataError(f"{raw}.")
        row, number, where = raw.data, raw.line, f"{path} line {raw.line}"
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise DataError(f"{where}: field 'prompt' must be non-empty text.")
        if not isinstance(row.get("checks"), list) or not row["checks"]:
            raise DataError(f"{where}: field 'checks' must be a non-empty list.")
        for i, spec in enumerate(row["checks"]):
            _check_spec(spec, f"{where} checks[{i}]")
        items.append(Instruction(str(row.get("id", number)), row["prompt"], row["checks"]))
    return items[:n] if n else items
