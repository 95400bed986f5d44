"""Every config key with its default, a file's value and what it does, read from the comments in kit/config.py.

    print(describe())                          # `qwen3-kit config`: every key, its default and its comment
    print(describe(load_config("configs/smoke.yaml"), "configs/smoke.yaml"))   # plus the file's values

The comments are the ones written beside each field in kit/config.py, so the help never drifts from the code.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import tokenize
from functools import cache
from pathlib import Path

import yaml

from kit.config import Config
from kit.config.schema import SECRET_KEYS

WIDTH = 28  # a value column's width; longer values are cut with an ellipsis


@cache
def comments() -> dict[tuple[str, str], str]:
    """(dataclass name, field name) -> the comment on the field's line (the last line, for a field spanning two)."""
    import kit.config.schema

    source = Path(kit.config.schema.__file__).read_text(encoding="utf-8")
    at_line = {tok.start[0]: tok.string.lstrip("#").strip()
               for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    found = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    text = at_line.get(item.end_lineno) or at_line.get(item.lineno)
                    if text:
                        found[(node.name, item.target.id)] = text
    return found


def rows(values, defaults, prefix: str = "") -> list[tuple[str, object, object, str]]:
    """(dotted key, default, value, comment) for every leaf of the tree, sections in order."""
    out = []
    for f in dataclasses.fields(values):
        value, default = getattr(values, f.name), getattr(defaults, f.name)
        if dataclasses.is_dataclass(value):
            out += rows(value, default, f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, default, value, comments().get((type(values).__name__, f.name), "")))
    return out


def _shown(key: str, value) -> str:
    if key in SECRET_KEYS:
        return "(set)" if value else '""'
    if isinstance(value, list):  # YAML's flow style, as a list is written on the command line
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
        text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
    else:
        text = {True: "true", False: "false", "": '""'}.get(value, value) if isinstance(value, (bool, str)) else value
    text = str(text)
    return text if len(text) <= WIDTH else text[: WIDTH - 1] + "…"


def describe(cfg: Config | None = None, source: str = "") -> str:
    """The table `qwen3-kit config` prints: key, default, (the file's value,) comment; `*` marks a changed value."""
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
                 "\"lora.target_modules=[q_proj,v_proj]\"); comments are kit/config.py's own.")
    return "\n".join(lines)
