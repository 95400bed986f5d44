"""The one config tree: dataclasses with documented defaults, loaded from YAML, overridden by `key=value`.

    cfg = load_config("configs/smoke.yaml", ["data.chat_ratio=0.3", "train.max_steps=10"])

Every problem found by validation is reported at once (`ConfigError`), naming the key and the fix.
`save_config` writes the resolved tree into a run folder without secrets.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kit.errors import KitError

QWEN3_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
SECRET_KEYS = {"tracking.api_key", "model.token"}


class ConfigError(KitError, ValueError):
    """A config that cannot be used; the message lists every problem, one per line."""


@dataclass
class ModelConfig:
    name: str = "tiny"  # "tiny" (random weights, built locally), "Qwen3-14B", a repo id, or a local folder
    source: str = "modelscope"  # modelscope | huggingface | local: where `name` is downloaded from
    cache_dir: str = ""  # "" = /root/autodl-tmp/qwen3-kit where it exists (AutoDL data disk), else ~/.cache/qwen3-kit
    revision: str = ""  # "" = the hub's default branch
    load_in_4bit: bool = True  # 4-bit base weights (QLoRA); False trains on 16-bit weights, ~4x the memory
    max_seq_length: int = 2048  # longer rows are dropped or truncated (data.overlong); memory grows with it
    adapter: str = ""  # continue training this LoRA adapter folder instead of starting a new one
    token: str = ""  # hub token for private repos; never written to disk


@dataclass
class SourceConfig:
    path: str = ""  # local file or glob (.jsonl/.json/.parquet), or a hub dataset id
    format: str = "openmath"  # openmath | sharegpt | messages | alpaca
    hub: str = "local"  # local | modelscope | huggingface
    split: str = "train"  # split (hub) or ignored (local)
    subset: str = ""  # the hub dataset's config name, if it has several
    role: str = "reasoning"  # reasoning | chat: which side of the mix its rows count on
    max_rows: int = 0  # 0 = all rows; else the first N rows that pass the filters
    problem_types: list[str] = field(default_factory=list)  # openmath: keep only these problem_type values
    min_pass_rate: float = 0.0  # openmath: drop rows below this pass_rate_72b_tir ("n/a" rows are kept)
    max_pass_rate: float = 1.0  # openmath: drop rows above it (e.g. 0.9 keeps the harder problems)
    max_chars: int = 0  # 0 = no bound; drop rows whose text is longer (cheap pre-filter before tokenizing)


@dataclass
class DataConfig:
    reasoning: SourceConfig = field(default_factory=lambda: SourceConfig(
        path="nv-community/OpenMathReasoning", hub="modelscope", split="cot", format="openmath", role="reasoning"))
    chat: SourceConfig = field(default_factory=lambda: SourceConfig(
        path="AI-ModelScope/FineTome-100k", hub="modelscope", split="train", format="sharegpt", role="chat"))
    extra: list[SourceConfig] = field(default_factory=list)  # your own data, each counted as reasoning or chat
    chat_ratio: float = 0.25  # share of chat in the mix: more keeps chat skills, less teaches more math
    ratio_by: str = "rows"  # rows (the reference recipe) | tokens: trained tokens, the share of the training signal
    max_rows: int = 0  # 0 = no cap on the mix's rows; the ratio is kept under the cap
    max_tokens: int = 0  # 0 = no cap on the mix's tokens
    seed: int = 3407  # same seed, same mix
    eval_rows: int = 32  # rows held out of the mix for eval loss (0 = no eval split)
    overlong: str = "drop"  # drop | truncate rows longer than model.max_seq_length
    train_turns: str = "final"  # final | all: which assistant turns of a multi-turn row are trained (docs/data.md)
    train_empty_think: bool = False  # train the empty <think></think> of chat rows? (docs/data.md says why not)
    on_bad_row: str = "error"  # error | skip (skipped rows are counted in the data report)
    redraw_chat_each_epoch: bool = False  # a fresh chat subset each epoch, so more chat data is seen
    num_proc: int = 0  # 0 = all cores, for tokenizing


@dataclass
class LoraConfig:
    r: int = 32  # rank: higher fits more, costs memory; 16-64 is typical
    alpha: int = 32  # scaling numerator; alpha == r keeps the update scale at 1
    dropout: float = 0.0  # 0 lets Unsloth use its fastest path
    target_modules: list[str] = field(default_factory=lambda: list(QWEN3_PROJECTIONS))
    use_rslora: bool = False  # rank-stabilised scaling alpha/sqrt(r), helps at high rank


@dataclass
class TrainConfig:
    backend: str = "auto"  # auto | unsloth | hf; auto = unsloth where a CUDA GPU is present
    output_dir: str = "runs"  # run folders go under here
    run_name: str = ""  # "" = a timestamped name
    max_steps: int = 30  # optimizer steps; 0 = train num_epochs epochs instead
    num_epochs: float = 1.0
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 4  # effective batch = batch size x this
    learning_rate: float = 2e-4
    lr_scheduler_type: str = "linear"
    warmup_steps: int = 5
    weight_decay: float = 0.01
    optim: str = "auto"  # auto = adamw_8bit on GPU (less memory), adamw_torch on CPU
    gradient_checkpointing: bool = True  # trades ~20% speed for a large cut in activation memory
    packing: bool = False  # pack rows into full sequences (no padding) - padding_free batching
    logging_steps: int = 1
    eval_steps: int = 0  # 0 = evaluate once per save
    save_steps: int = 50  # checkpoint every N steps
    save_total_limit: int = 3  # keep the newest K checkpoints
    resume: str = "auto"  # auto (newest checkpoint in the run folder) | never (start this run over) | a checkpoint
    seed: int = 3407


@dataclass
class TrackingConfig:
    wandb: str = "disabled"  # online | offline | disabled
    project: str = "qwen3-kit"
    entity: str = ""
    tags: list[str] = field(default_factory=list)
    api_key: str = ""  # prefer the WANDB_API_KEY variable; never printed or written


@dataclass
class ExportConfig:
    out_dir: str = ""  # "" = <run folder>/export
    formats: list[str] = field(default_factory=lambda: ["adapter", "merged_16bit"])  # + merged_4bit_forced, gguf
    thinking_default: bool = True  # the mode the served template uses when a request does not set enable_thinking
    max_shard_size: str = "5GB"
    overwrite: bool = False


@dataclass
class EvalConfig:
    math_path: str = "data/openmath_heldout.parquet"  # held-out problems with expected_answer (OpenMathReasoning)
    chat_path: str = "data/finetome_heldout.jsonl"  # held-out conversations (ShareGPT)
    n_math: int = 20  # more is a tighter estimate and a longer run (each problem is generated twice)
    n_chat: int = 10
    max_new_tokens: int = 1024  # reasoning traces need room; too short cuts the think block (counted as a failure)
    seed: int = 0


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES = {
    "model.source": {"modelscope", "huggingface", "local"},
    "data.ratio_by": {"rows", "tokens"},
    "data.overlong": {"drop", "truncate"},
    "data.train_turns": {"final", "all"},
    "data.on_bad_row": {"error", "skip"},
    "train.backend": {"auto", "unsloth", "hf"},
    "tracking.wandb": {"online", "offline", "disabled"},
    "source.format": {"openmath", "sharegpt", "messages", "alpaca"},
    "source.hub": {"local", "modelscope", "huggingface"},
    "source.role": {"reasoning", "chat"},
}
EXPORT_FORMATS = {"adapter", "merged_16bit", "merged_4bit_forced", "gguf"}


def _fields(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _unknown(key: str, valid: list[str], where: str) -> str:
    near = difflib.get_close_matches(key, valid, n=1)
    hint = f" Did you mean '{where}{near[0]}'?" if near else f" Valid keys: {', '.join(valid)}."
    return f"unknown key '{where}{key}'.{hint}"


def _coerce(value: Any, kind: Any, where: str, base: Any = None) -> Any:
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' must be a mapping, got {value!r}.")
        return _build(kind, value, where + ".", base)
    if typing.get_origin(kind) is list:
        (item,) = typing.get_args(kind)
        values = value if isinstance(value, list) else [value]
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(values)]
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{where}' must be true or false, got {value!r}.")
    if kind in (int, float):
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(f"'{where}' must be a number, got {value!r}.") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{where}' must be a number, got {value!r}.")
        if kind is int and float(value) != int(value):
            raise ConfigError(f"'{where}' must be a whole number, got {value!r}.")
        return kind(value)
    if kind is str:
        return "" if value is None else str(value)
    return value


def _build(cls, values: dict, where: str = "", base: Any = None):
    """`cls` filled from `values`; keys not given keep `base`'s values (a section's own defaults)."""
    known = _fields(cls)
    errors = [_unknown(k, list(known), where) for k in values if k not in known]
    if errors:
        raise ConfigError("\n".join(errors))
    start = base if base is not None else cls()
    return dataclasses.replace(start, **{
        k: _coerce(v, known[k], where + k, getattr(start, k)) for k, v in values.items()})


def _set_dotted(tree: dict, dotted: str, value: Any, cls) -> None:
    parts = dotted.split(".")
    node, kind = tree, cls
    for i, part in enumerate(parts):
        known = _fields(kind)
        if part not in known:
            raise ConfigError(_unknown(part, list(known), ".".join(parts[:i]) + ("." if i else "")))
        if i == len(parts) - 1:
            node[part] = value
        else:
            kind = known[part]
            if not dataclasses.is_dataclass(kind):
                raise ConfigError(f"'{'.'.join(parts[: i + 1])}' has no sub-keys.")
            node = node.setdefault(part, {})


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    """`["data.chat_ratio=0.3"]` -> `[("data.chat_ratio", 0.3)]`; values are parsed as YAML scalars/lists."""
    parsed = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override '{item}' is not key=value (e.g. data.chat_ratio=0.3).")
        parsed.append((key.strip(), yaml.safe_load(raw) if raw.strip() else ""))
    return parsed


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Build the config from a YAML file (optional) plus `key=value` overrides, then validate it.

    Raises `ConfigError` listing every problem (unknown keys with the nearest valid one, bad values).
    """
    tree: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file '{path}' does not exist.")
        tree = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(tree, dict):
            raise ConfigError(f"config file '{path}' must hold a mapping of sections (model:, data:, ...).")
    for key, value in parse_overrides(overrides or []):
        _set_dotted(tree, key, value, Config)
    try:
        cfg = _build(Config, tree)
    except ConfigError as e:
        raise ConfigError(f"{path or 'config'}: {e}") from None
    validate(cfg)
    return cfg


def _source_problems(src: SourceConfig, where: str) -> list[str]:
    problems = []
    for key in ("format", "hub", "role"):
        allowed = CHOICES[f"source.{key}"]
        if getattr(src, key) not in allowed:
            problems.append(f"{where}.{key} is '{getattr(src, key)}'; use one of {sorted(allowed)}.")
    if not src.path:
        problems.append(f"{where}.path is empty; give a file, a glob, or a dataset id.")
    elif src.hub == "local" and not local_matches(src.path):
        problems.append(f"{where}.path '{src.path}' matches no file.")
    if src.max_rows < 0 or src.max_chars < 0:
        problems.append(f"{where}.max_rows and max_chars must be >= 0 (0 = no limit).")
    if not 0 <= src.min_pass_rate <= src.max_pass_rate <= 1:
        problems.append(f"{where}: need 0 <= min_pass_rate <= max_pass_rate <= 1, "
                        f"got {src.min_pass_rate} and {src.max_pass_rate}.")
    return problems


def local_matches(path: str) -> list[Path]:
    p = Path(os.path.expanduser(path))
    if p.exists():
        return [p]
    anchor = Path(p.anchor) if p.is_absolute() else Path(".")
    pattern = str(p.relative_to(p.anchor)) if p.is_absolute() else str(p)
    return sorted(anchor.glob(pattern))


def validate(cfg: Config) -> None:
    """Check every field; raise one `ConfigError` naming each problem and its fix."""
    problems = []
    for dotted, allowed in CHOICES.items():
        section, _, key = dotted.partition(".")
        if section != "source" and getattr(getattr(cfg, section), key) not in allowed:
            problems.append(f"{dotted} is '{getattr(getattr(cfg, section), key)}'; use one of {sorted(allowed)}.")
    if not 0 <= cfg.data.chat_ratio <= 1:
        problems.append(f"data.chat_ratio is {cfg.data.chat_ratio}; it is the share of chat in the mix, in [0, 1].")
    for key in ("max_rows", "max_tokens", "eval_rows", "num_proc"):
        if getattr(cfg.data, key) < 0:
            problems.append(f"data.{key} is {getattr(cfg.data, key)}; it cannot be negative (0 = no limit).")
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "save_steps", "save_total_limit"):
        if getattr(cfg.train, key) < 1:
            problems.append(f"train.{key} is {getattr(cfg.train, key)}; it must be at least 1.")
    for key in ("max_steps", "warmup_steps", "eval_steps", "num_epochs", "learning_rate"):
        if getattr(cfg.train, key) < 0:
            problems.append(f"train.{key} is {getattr(cfg.train, key)}; it cannot be negative.")
    if cfg.train.max_steps == 0 and cfg.train.num_epochs <= 0:
        problems.append("train.max_steps and train.num_epochs are both 0; set one of them.")
    if cfg.model.max_seq_length < 16:
        problems.append(f"model.max_seq_length is {cfg.model.max_seq_length}; it must be at least 16.")
    if cfg.lora.r < 1 or cfg.lora.alpha < 1:
        problems.append(f"lora.r and lora.alpha must be >= 1, got {cfg.lora.r} and {cfg.lora.alpha}.")
    if not 0 <= cfg.lora.dropout < 1:
        problems.append(f"lora.dropout is {cfg.lora.dropout}; it must be in [0, 1).")
    if not cfg.lora.target_modules:
        problems.append("lora.target_modules is empty; the default trains all seven Qwen3 projections.")
    if cfg.model.source == "local" and cfg.model.name != "tiny" and not Path(cfg.model.name).expanduser().is_dir():
        problems.append(f"model.name '{cfg.model.name}' is not a folder, and model.source is local.")
    if cfg.model.adapter and not Path(cfg.model.adapter).expanduser().is_dir():
        problems.append(f"model.adapter '{cfg.model.adapter}' is not a folder.")
    for key in ("n_math", "n_chat", "max_new_tokens"):
        if getattr(cfg.eval, key) < 0:
            problems.append(f"eval.{key} is {getattr(cfg.eval, key)}; it cannot be negative.")
    if bad := set(cfg.export.formats) - EXPORT_FORMATS:
        problems.append(f"export.formats has {sorted(bad)}; use any of {sorted(EXPORT_FORMATS)}.")
    sources = [("data.reasoning", cfg.data.reasoning), ("data.chat", cfg.data.chat)]
    sources += [(f"data.extra[{i}]", s) for i, s in enumerate(cfg.data.extra)]
    for where, src in sources:
        if where == "data.reasoning" and cfg.data.chat_ratio == 1:
            continue  # chat only: the reasoning source is never read
        if where == "data.chat" and cfg.data.chat_ratio == 0:
            continue
        problems += _source_problems(src, where)
    if problems:
        raise ConfigError("invalid config:\n- " + "\n- ".join(problems))


def to_dict(cfg: Config, *, redact: bool = True) -> dict:
    """The config as plain data; with `redact`, secrets (tokens, API keys) are left out entirely."""
    tree = dataclasses.asdict(cfg)
    if redact:
        for dotted in SECRET_KEYS:
            section, key = dotted.split(".")
            tree[section].pop(key, None)
    return tree


def save_config(cfg: Config, path: str | Path) -> Path:
    """Write the resolved config (without secrets) as YAML."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path
