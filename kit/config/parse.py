"""YAML and `key=value` overrides into the typed config tree, every unknown key and wrong type collected, none fatal.

    problems = set_overrides(tree, ["lora.r=big"], Config); cfg = build(Config, tree, problems)

`build` fills each dataclass from its section, keeping the defaults for what is not given; a value that is not of
the field's type is reported and the default kept, so one pass names every problem (kit.config.schema raises them at once).
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


# The names TRL / transformers, LLaMA-Factory, ms-swift and Unsloth's notebooks use for what the kit calls otherwise
# (their spellings checked in their argument classes and example configs), with what the kit's value means.
ALIASES = {
    "report_to": "tracking.wandb (online | offline | disabled)",
    "num_train_epochs": "train.num_epochs",
    "epochs": "train.num_epochs",
    "cutoff_len": "model.max_seq_length",
    "max_length": "model.max_seq_length",
    "max_seq_len": "model.max_seq_length",
    "lora_rank": "lora.r",
    "lora_r": "lora.r",
    "rank": "lora.r",
    "lora_alpha": "lora.alpha",
    "lora_dropout": "lora.dropout",
    "lora_target": "lora.target_modules (a list of projections, or all-linear)",
    "lora_target_modules": "lora.target_modules (a list of projections, or all-linear)",
    "resume_from_checkpoint": "train.resume (auto, never, or a checkpoint folder)",
    "model": "model.name (Qwen3-14B, a repo id, or a folder)",
    "model_name_or_path": "model.name (Qwen3-14B, a repo id, or a folder)",
    "warmup_ratio": "train.warmup_steps (a number of steps, not a share of them)",
    "quantization_bit": "model.load_in_4bit (true or false)",
    "quant_bits": "model.load_in_4bit (true or false)",
    "use_gradient_checkpointing": "train.gradient_checkpointing",
    "random_state": "train.seed",
    "lr": "train.learning_rate",
    "max_samples": "data.max_rows",
    "val_size": "data.eval_rows (a number of rows, not a share)",
    "split_dataset_ratio": "data.eval_rows (a number of rows, not a share)",
    "dataset": "data.reasoning.path, data.chat.path or data.extra (docs/data.md)",
    "dataset_name": "data.reasoning.path, data.chat.path or data.extra (docs/data.md)",
    "wandb_project": "tracking.project",
}


def leaves(cls, prefix: str = "") -> dict[str, list[str]]:
    """Each field name of the tree under `cls` -> the dotted keys that end in it (`max_steps` -> [train.max_steps])."""
    out: dict[str, list[str]] = {}
    for name, kind in fields(cls).items():
        if dataclasses.is_dataclass(kind):
            for leaf, keys in leaves(kind, f"{prefix}{name}.").items():
                out.setdefault(leaf, []).extend(keys)
        else:
            out.setdefault(name, []).append(prefix + name)
    return out


def home(name: str, root, section: str = "") -> str | None:
    """Where a familiar name lives in the config tree `root`: an alias (`report_to`), or a key given without its
    section (`max_steps` -> `train.max_steps`, or `grpo.max_steps` with `section` grpo, where both have it); None
    when the kit has nothing by that name."""
    if name in ALIASES:
        return ALIASES[name]
    keys = leaves(root).get(name) or []
    keys = [k for k in keys if k.startswith(f"{section}.")] or keys
    return " or ".join(keys) if keys else None


def unknown(key: str, valid: list[str], where: str, root) -> str:
    if found := home(key, root):
        return f"unknown key '{where}{key}': here it is {found}."
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
            return unknown(part, list(known), ".".join(parts[:i]) + ("." if i else ""), cls)
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


def build(cls, values: dict | None, problems: list[str], where: str = "", base: Any = None, root: Any = None):
    """`cls` filled from `values`, keeping `base`'s (or the defaults') values for keys not given or not valid;
    `root` is the whole tree's class (for naming where a misplaced key lives), `cls` itself at the top."""
    root = root or cls
    known = fields(cls)
    start = base if base is not None else cls()
    given = {}
    for key, value in (values or {}).items():
        if key not in known:
            problems.append(unknown(key, list(known), where, root))
            continue
        try:
            given[key] = _coerce(value, known[key], where + key, getattr(start, key), problems, root)
        except _BadValue as e:
            problems.append(str(e))
    return dataclasses.replace(start, **given)


def _coerce(value: Any, kind: Any, where: str, base: Any, problems: list[str], root: Any) -> Any:
    if dataclasses.is_dataclass(kind):
        if value is not None and not isinstance(value, dict):
            raise _BadValue(f"'{where}' must be a mapping, got {value!r}.")
        return build(kind, value, problems, where + ".", base, root)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        values = value if isinstance(value, list) else [value]
        return [_coerce(v, item, f"{where}[{i}]", None, problems, root) for i, v in enumerate(values)]
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
