"""Every config key with its default, a file's value and what it does, read from the fields themselves.

    print(describe())                                          # `qwen3-kit config`
    print(describe(load_config("configs/smoke.yaml"), "configs/smoke.yaml"))   # plus the file's values, * = changed

The text is each field's `help` metadata and the choices of its `Literal` type (kit.config.schema), so the help
never drifts from the code.
"""

from __future__ import annotations

import dataclasses
import typing

import yaml

from kit.config.schema import SECRET_KEYS, Config

WIDTH = 28  # a value column's width; longer values are cut with an ellipsis


def rows(values, defaults, prefix: str = "") -> list[tuple[str, object, object, str]]:
    """(dotted key, default, value, help) for every leaf of the tree, sections in order."""
    out, hints = [], typing.get_type_hints(type(values))
    for f in dataclasses.fields(values):
        value, default = getattr(values, f.name), getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            out += rows(value, default, f"{prefix}{f.name}.")
            continue
        choices = typing.get_args(hints[f.name]) if typing.get_origin(hints[f.name]) is typing.Literal else ()
        note = f.metadata.get("help", "")
        out.append((prefix + f.name, default, value, f"{' | '.join(choices)}: {note}" if choices else note))
    return out


def _shown(key: str, value) -> str:
    if key in SECRET_KEYS:
        return "(set)" if value else '""'
    if isinstance(value, (list, dict)):  # YAML's flow style, as a list is written on the command line
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value] \
            if isinstance(value, list) else value
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    else:
        text = {True: "true", False: "false", "": '""', None: "null"}.get(value, value) \
            if isinstance(value, (bool, str, type(None))) else value
    text = str(text)
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def describe(cfg: Config | None = None, source: str = "") -> str:
    """The table `qwen3-kit config` prints: key, default, (the file's value,) what it does; `*` marks a change."""
    table = rows(cfg or Config(), Config())
    key_width = max(len(key) for key, *_ in table) + 2
    if cfg is None:
        lines = [f"{'key':<{key_width}}{'default':<{WIDTH + 2}}what it does"]
        lines += [f"{key:<{key_width}}{_shown(key, default):<{WIDTH + 2}}{note}" for key, default, _, note in table]
    else:
        lines = [f"{'key':<{key_width}}{'default':<{WIDTH + 2}}  {source or 'value':<{WIDTH}}  what it does"]
        lines += [f"{key:<{key_width}}{_shown(key, default):<{WIDTH + 2}}{'*' if value != default else ' '} "
                  f"{_shown(key, value):<{WIDTH}}  {note}" for key, default, value, note in table]
    lines.append("\nset any key on the command line as key=value, e.g. train.max_steps=100 (lists: "
                 "\"lora.target_modules=[q_proj,v_proj]\"); under train and grpo any other field of TRL's SFTConfig "
                 "and GRPOConfig too (train.max_grad_norm=0.3).")
    return "\n".join(lines)
