"""YAML and `key=value` overrides into the typed config tree, every unknown key and wrong type collected, none fatal.

    problems = set_overrides(tree, ["lora.r=big"], Config); cfg = build(Config, tree, problems)

`build` fills each dataclass from its section, keeping the defaults for what is not given; a value that is not of
the field's type is reported and the default kept, so one pass names every problem (kit.config raises them at once).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

import yaml


class _BadValue(ValueError):
    pass


def fields(cls) -> dict[str, Any]:
    """A config dataclass's fields and their types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def unknown(key: str, valid: list[str], where: str) -> str:
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{where}{near[0]}'?" if near else f" Valid keys: {', '.join(valid)}."
    return f"unknown key '{where}{key}'.{hint}"


def set_overrides(tree: dict, overrides: list[str], root) -> list[str]:
    """Apply `a.b=value` overrides to `tree`, whose schema is the dataclass `root`; values are parsed as YAML.
    Returns the problems, one per bad override."""
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            problems.append(f"override '{item}' is not key=value (e.g. data.chat_ratio=0.3).")
            continue
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw  # not YAML (e.g. an unbalanced bracket): the text itself, judged by its field's type
        problem = _set_dotted(tree, key.strip(), value, root)
        if problem:
            problems.append(problem)
    return problems


def _set_dotted(tree: dict, dotted: str, value: Any, cls) -> str | None:
    parts = dotted.split(".")
    node, kind = tree, cls
    for i, part in enumerate(parts):
        known = fields(kind)
        if part not in known:
            return unknown(part, list(known), ".".join(parts[:i]) + ("." if i else ""))
        if i == len(parts) - 1:
            node[part] = value
            return None
        kind = known[part]
        if not dataclasses.is_dataclass(kind):
            return f"'{'.'.join(parts[: i + 1])}' has no sub-keys."
        if not isinstance(node.get(part), dict):  # absent, or an empty section (`train:` alone is None)
            node[part] = {}
        node = node[part]
    return None


def build(cls, values: dict | None, problems: list[str], where: str = "", base: Any = None):
    """`cls` filled from `values`, keeping `base`'s (or the defaults') values for keys not given or not valid."""
    known = fields(cls)
    start = base if base is not None else cls()
    given = {}
    for key, value in (values or {}).items():
        if key not in known:
            problems.append(unknown(key, list(known), where))
            continue
        try:
            given[key] = _coerce(value, known[key], where + key, getattr(start, key), problems)
        except _BadValue as e:
            problems.append(str(e))
    return dataclasses.replace(start, **given)


def _coerce(value: Any, kind: Any, where: str, base: Any, problems: list[str]) -> Any:
    if dataclasses.is_dataclass(kind):
        if value is not None and not isinstance(value, dict):
            raise _BadValue(f"'{where}' must be a mapping, got {value!r}.")
        return build(kind, value, problems, where + ".", base)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        values = value if isinstance(value, list) else [value]
        return [_coerce(v, item, f"{where}[{i}]", None, problems) for i, v in enumerate(values)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _BadValue(f"'{where}' must be true or false, got {value!r}.")
    if kind in (int, float):
        return _number(value, kind, where)
    if kind is str:
        return "" if value is None else str(value)
    return value


def _number(value: Any, kind: type, where: str):
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
        try:
            value = float(value)
        except ValueError:
            raise _BadValue(f"'{where}' must be a number, got {value!r}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadValue(f"'{where}' must be a number, got {value!r}.")
    if kind is int and float(value) != int(value):
        raise _BadValue(f"'{where}' must be a whole number, got {value!r}.")
    return kind(value)
