"""YAML and `key=value` overrides into the typed config tree, every problem collected before any is raised.

    cfg = load_config("configs/smoke.yaml", ["lora.r=16", "train.neftune_noise_alpha=5"])

A key under `train` or `grpo` that TRL's SFTConfig/GRPOConfig knows is passed through, typed by TRL's annotation;
names from TRL, LLaMA-Factory and ms-swift that the kit spells otherwise are answered with the kit's key.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kit.config.schema import SECRET_KEYS, Config, ConfigError

# What other tools call what the kit names otherwise (their spellings checked in their argument classes).
ALIASES = {
    "report_to": "tracking.wandb (online | offline | disabled)",
    "num_epochs": "train.num_train_epochs", "epochs": "train.num_train_epochs",
    "cutoff_len": "model.max_seq_length", "max_length": "model.max_seq_length", "max_seq_len": "model.max_seq_length",
    "lora_rank": "lora.r", "lora_r": "lora.r", "rank": "lora.r", "alpha": "lora.lora_alpha",
    "dropout": "lora.lora_dropout", "lora_target": "lora.target_modules (a list of projections, or all-linear)",
    "lora_target_modules": "lora.target_modules (a list of projections, or all-linear)",
    "resume_from_checkpoint": "train.resume (auto, never, or a checkpoint folder)",
    "model": "model.name (Qwen3-14B, a repo id, or a folder)",
    "model_name_or_path": "model.name (Qwen3-14B, a repo id, or a folder)",
    "warmup_ratio": "train.warmup_steps (a number of steps, not a share of them)",
    "quantization_bit": "model.load_in_4bit (true or false)", "quant_bits": "model.load_in_4bit (true or false)",
    "use_gradient_checkpointing": "train.gradient_checkpointing", "random_state": "train.seed",
    "lr": "train.learning_rate", "max_samples": "data.max_rows",
    "val_size": "data.eval_rows (a number of rows, not a share)",
    "split_dataset_ratio": "data.eval_rows (a number of rows, not a share)",
    "dataset": "data.reasoning, data.chat or data.sources (docs/data.md)",
    "dataset_name": "data.reasoning, data.chat or data.sources (docs/data.md)",
    "extra": "data.sources (a list of sources, each with its share)", "wandb_project": "tracking.project",
    "redraw_chat_each_epoch": "data.redraw_each_epoch",
}
# TRL fields the kit sets itself, from the settings named here.
SET_BY_KIT = {"output_dir": "train.output_dir and train.run_name", "max_length": "model.max_seq_length",
              "report_to": "tracking.wandb", "bf16": "the GPU (bf16 where it has it)", "fp16": "the GPU",
              "num_train_epochs": "train.num_train_epochs", "padding_free": "train.packing",
              "dataset_kwargs": "the kit (its data is tokenized already)", "chat_template_kwargs": "grpo.thinking",
              "reward_weights": "grpo.correct_weight, format_weight and length_weight", "use_cpu": "the machine",
              "gradient_checkpointing": "train.gradient_checkpointing", "run_name": "train.run_name",
              "resume_from_checkpoint": "train.resume"}
PASSED_TO = {"train": ("trl/trainer/sft_config.py", "SFTConfig"), "grpo": ("trl/trainer/grpo_config.py", "GRPOConfig")}


class _BadValue(ValueError):
    pass


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config from a YAML file (optional) plus `key=value` overrides; raises `ConfigError` listing every problem."""
    from kit.config.checks import problems as invalid
    from kit.models.profiles import PROJECTIONS

    tree = read_yaml(Path(path)) if path is not None else {}
    problems = set_overrides(tree, overrides or [])
    cfg = build(Config, tree, problems)
    if cfg.lora.target_modules == ["all-linear"]:  # peft's name for every linear layer but the head
        cfg.lora.target_modules = list(PROJECTIONS)
    problems += invalid(cfg)
    given = " and ".join(([str(path)] if path is not None else []) + (["the command line"] if overrides else []))
    if len(problems) == 1:
        raise ConfigError(f"{given or 'config'}: {problems[0]}")
    if problems:
        raise ConfigError(f"{given or 'config'}: {len(problems)} problems:\n- " + "\n- ".join(problems))
    return cfg


def read_yaml(path: Path) -> dict:
    """A config file's tree; a missing file, a syntax error (with its line and column) or a non-mapping, in one line."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist.")
    try:
        tree = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file '{path}' is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                          f"{e.start}); save it as UTF-8.") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"config file '{path}'{where}: {getattr(e, 'problem', None) or e}; "
                          "fix the YAML there.") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of sections (model:, data:, ...).")
    return tree


def redact_argv(argv: list[str]) -> list[str]:
    """A command line with the values of secret overrides (`tracking.api_key=...`, `model.token=...`) masked."""
    return [f"{arg.partition('=')[0]}=<redacted>" if arg.partition("=")[0].strip() in SECRET_KEYS else arg
            for arg in argv]


def fields(cls) -> dict[str, Any]:
    """A config dataclass's fields and their types."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def leaves(cls, prefix: str = "") -> dict[str, list[str]]:
    """Each field name of the tree under `cls` -> the dotted keys that end in it (`max_steps` -> [train.max_steps]);
    a list of sections gives `data.sources.<i>.share`."""
    out: dict[str, list[str]] = {}
    for name, kind in fields(cls).items():
        item = (typing.get_args(kind) or [None])[0] if typing.get_origin(kind) is list else None
        if dataclasses.is_dataclass(kind) or dataclasses.is_dataclass(item):
            below = leaves(kind if item is None else item, f"{prefix}{name}.{'' if item is None else '<i>.'}")
        else:
            below = {name: [prefix + name]}
        for leaf, keys in below.items():
            out.setdefault(leaf, []).extend(keys)
    return out


def home(name: str, section: str = "") -> str | None:
    """Where a familiar name lives: an alias (`report_to`), or a key given without its section (`max_steps` ->
    `train.max_steps`, or `grpo.max_steps` with `section` grpo, where both have it); None when the kit has none."""
    if name in ALIASES:
        return ALIASES[name]
    keys = leaves(Config).get(name) or []
    keys = [k for k in keys if k.startswith(f"{section}.")] or keys
    return " or ".join(keys) if keys else None


def _unknown(key: str, valid: list[str], where: str) -> str:
    if found := home(key):
        return f"unknown key '{where}{key}': here it is {found}."
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{where}{near[0]}'?" if near else f" Valid keys: {', '.join(valid)}."
    return f"unknown key '{where}{key}'.{hint}"


def set_overrides(tree: dict, overrides: list[str]) -> list[str]:
    """Apply `a.b=value` overrides (YAML values) to `tree`; a problem per override that is not key=value."""
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
        parts = key.strip().split(".")
        node = tree
        for depth, part in enumerate(parts):
            above = ".".join(parts[:depth])
            if isinstance(node, list):  # data.sources.0.share: an index into the list
                if not (part.isdigit() and int(part) < len(node)):
                    has = f"a list of {len(node)}, so '{part}' must be an index (0 to {len(node) - 1}); or give" \
                        if node else "empty: give"
                    problems.append(f"'{key}': {above} is {has} the whole list, e.g. {above}=[{{path: my.jsonl}}].")
                    break
                part = int(part)
            elif not isinstance(node, dict):
                problems.append(f"'{key}': {above} is {node!r}, not a section with keys.")
                break
            if depth == len(parts) - 1:
                node[part] = value
            elif isinstance(node, dict) and node.get(part) is None:  # absent, or an empty section (`train:` alone)
                node[part] = {}
            node = node[part]
    return problems


@cache
def library_fields(file: str, cls: str) -> dict[str, str]:
    """A TRL or transformers dataclass's fields and annotations (its in-library bases' too), read from its source:
    importing them now would come before unsloth's import, which must come first."""
    package, _, rest = file.partition("/")
    spec = importlib.util.find_spec(package)  # finds the package without importing it
    tree = ast.parse(Path(spec.submodule_search_locations[0], rest).read_text(encoding="utf-8"))
    body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls)
    found = {node.target.id: ast.unparse(node.annotation) for node in body.body
             if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)}
    if any(isinstance(b, ast.Name) and b.id == "TrainingArguments" for b in body.bases):
        found = library_fields("transformers/training_args.py", "TrainingArguments") | found
    return found


def _passed_through(section: str, key: str, value: Any, where: str, ours: list[str]) -> Any:
    """A `train`/`grpo` key typed as TRL's dataclass types it; _BadValue where TRL lacks it or the kit sets it."""
    file, cls = PASSED_TO[section]
    known = library_fields(file, cls)
    if key in SET_BY_KIT:
        raise _BadValue(f"'{where}{key}' is set by the kit from {SET_BY_KIT[key]}.")
    if key not in known:
        raise _BadValue(_unknown(key, ours, where).rstrip(".") + f" (nor is it a field of TRL's {cls}).")
    simple = {"int": int, "float": float, "bool": bool, "str": str}
    kind = simple.get(known[key].removeprefix("Optional[").split("|")[0].strip(" ]"), Any)
    return _coerce(value, kind, where + key, None, [])


def build(cls, values: dict | None, problems: list[str], where: str = "", base: Any = None):
    """`cls` filled from `values`, keeping `base`'s (or the defaults') values for keys not given or not valid."""
    known = fields(cls)
    start = base if base is not None else cls()
    given, passed = {}, dict(getattr(start, "trl", {}) or {})
    section = where.rstrip(".")
    for key, value in (values or {}).items():
        try:
            if key in known and key != "trl":
                given[key] = _coerce(value, known[key], where + key, getattr(start, key), problems)
            elif section in PASSED_TO and key == "trl" and isinstance(value, dict):
                passed.update({k: _passed_through(section, k, v, where, list(known)) for k, v in value.items()})
            elif section in PASSED_TO:
                passed[key] = _passed_through(section, key, value, where, list(known))
            else:
                problems.append(_unknown(key, list(known), where))
        except _BadValue as e:
            problems.append(str(e))
    if section in PASSED_TO:
        given["trl"] = passed
    return dataclasses.replace(start, **given)


def _coerce(value: Any, kind: Any, where: str, base: Any, problems: list[str]) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if value is not None and not isinstance(value, dict):
            raise _BadValue(f"'{where}' must be a mapping of its keys, got {value!r}.")
        return build(kind, value, problems, where + ".", base)
    if origin is typing.Literal:
        if value not in args:
            raise _BadValue(f"{where} is {value!r}; use one of {', '.join(map(str, args))}.")
        return value
    if origin is list:
        values = value if isinstance(value, list) else [value]
        return [_coerce(v, args[0], f"{where}[{i}]", None, problems) for i, v in enumerate(values)]
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        return None if value is None else _coerce(value, next(a for a in args if a is not type(None)), where, base,
                                                  problems)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _BadValue(f"'{where}' must be true or false, got {value!r}.")
    if kind in (int, float):
        return _number(value, kind, where)
    if kind is str:
        return "" if value is None else str(value)
    if kind is dict and not isinstance(value, dict):
        raise _BadValue(f"'{where}' must be a mapping, got {value!r}.")
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
