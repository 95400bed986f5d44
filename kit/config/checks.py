"""Every value of a config checked before any work starts: choices, ranges, paths, and the names libraries accept.

    problems(cfg)   # ["train.optim is 'adam'; use one of [...]", ...]; kit.config.schema.load_config raises them at once
"""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
from pathlib import Path

from kit.models.profiles import PROJECTIONS
from kit.paths import local_matches, shown

CHOICES = {
    "model.source": {"modelscope", "huggingface", "local"},
    "data.ratio_by": {"rows", "tokens"},
    "data.overlong": {"drop", "truncate"},
    "data.train_turns": {"final", "all"},
    "data.on_bad_row": {"error", "skip"},
    "train.backend": {"auto", "unsloth", "hf"},
    "tracking.wandb": {"online", "offline", "disabled"},
    "grpo.start_from": {"sft", "base"},
    "grpo.generation": {"auto", "vllm", "hf"},
    "source.format": {"openmath", "sharegpt", "messages", "alpaca"},
    "source.hub": {"local", "modelscope", "huggingface"},
    "source.role": {"reasoning", "chat"},
}
EXPORT_FORMATS = {"adapter", "merged_16bit", "merged_4bit_forced"}  # GGUF: llama.cpp on merged_16bit (README)


def problems(cfg) -> list[str]:
    """Every problem with `cfg`'s values, each naming the key and the fix; empty when it can be used."""
    return [*_choices(cfg), *_ranges(cfg), *_paths(cfg), *_names_libraries_accept(cfg), *_sources(cfg),
            *_tracking(cfg), *_grpo(cfg.grpo)]


def _choices(cfg) -> list[str]:
    out = []
    for dotted, allowed in CHOICES.items():
        section, _, key = dotted.partition(".")
        if section != "source" and getattr(getattr(cfg, section), key) not in allowed:
            out.append(f"{dotted} is '{getattr(getattr(cfg, section), key)}'; use one of {sorted(allowed)}.")
    if bad := set(cfg.export.formats) - EXPORT_FORMATS:
        gguf = " (for GGUF, convert merged_16bit with llama.cpp: README, 'GGUF')" if "gguf" in bad else ""
        out.append(f"export.formats has {sorted(bad)}; use any of {sorted(EXPORT_FORMATS)}{gguf}.")
    return out


def _ranges(cfg) -> list[str]:
    out = []
    if not 0 <= cfg.data.chat_ratio <= 1:
        out.append(f"data.chat_ratio is {cfg.data.chat_ratio}; it is the share of chat in the mix, in [0, 1].")
    for key in ("max_rows", "max_tokens", "eval_rows", "num_proc"):
        if getattr(cfg.data, key) < 0:
            out.append(f"data.{key} is {getattr(cfg.data, key)}; it cannot be negative (0 = no limit).")
    for key in ("per_device_train_batch_size", "gradient_accumulation_steps", "save_steps", "save_total_limit"):
        if getattr(cfg.train, key) < 1:
            out.append(f"train.{key} is {getattr(cfg.train, key)}; it must be at least 1.")
    for key in ("max_steps", "warmup_steps", "eval_steps", "num_epochs", "learning_rate"):
        if getattr(cfg.train, key) < 0:
            out.append(f"train.{key} is {getattr(cfg.train, key)}; it cannot be negative.")
    if cfg.train.max_steps == 0 and cfg.train.num_epochs <= 0:
        out.append("train.max_steps and train.num_epochs are both 0; set one of them.")
    if cfg.model.max_seq_length < 16:
        out.append(f"model.max_seq_length is {cfg.model.max_seq_length}; it must be at least 16.")
    if cfg.lora.r < 1 or cfg.lora.alpha < 1:
        out.append(f"lora.r and lora.alpha must be >= 1, got {cfg.lora.r} and {cfg.lora.alpha}.")
    if not 0 <= cfg.lora.dropout < 1:
        out.append(f"lora.dropout is {cfg.lora.dropout}; it must be in [0, 1).")
    for key in ("n_math", "n_instructions", "max_new_tokens"):
        if getattr(cfg.eval, key) < 0:
            out.append(f"eval.{key} is {getattr(cfg.eval, key)}; it cannot be negative.")
    if cfg.eval.batch_size < 1:
        out.append(f"eval.batch_size is {cfg.eval.batch_size}; it must be at least 1.")
    return out


def _grpo(g) -> list[str]:
    """GRPO's own values; how they fit model.max_seq_length is checked when GRPO starts (kit.training.reinforce.start), so that
    an SFT config need not make room for GRPO's defaults."""
    out = []
    for key in ("max_steps", "prompts_per_step", "per_device_train_batch_size", "max_prompt_length",
                "max_completion_length", "save_steps"):
        if getattr(g, key) < 1:
            out.append(f"grpo.{key} is {getattr(g, key)}; it must be at least 1.")
    if g.num_generations < 2:
        out.append(f"grpo.num_generations is {g.num_generations}; GRPO compares a problem's completions with each "
                   "other, so it needs at least 2.")
    completions = g.prompts_per_step * g.num_generations
    if g.per_device_train_batch_size >= 1 and completions % g.per_device_train_batch_size:
        out.append(f"grpo.per_device_train_batch_size is {g.per_device_train_batch_size}; it must divide the "
                   f"{completions} completions of a step (prompts_per_step x num_generations).")
    for key in ("learning_rate", "temperature"):
        if getattr(g, key) <= 0:
            out.append(f"grpo.{key} is {getattr(g, key)}; it must be above 0.")
    for key in ("beta", "correct_weight", "format_weight", "length_weight", "skip_rows", "warmup_steps"):
        if getattr(g, key) < 0:
            out.append(f"grpo.{key} is {getattr(g, key)}; it cannot be negative.")
    if not g.correct_weight + g.format_weight + g.length_weight:
        out.append("grpo.correct_weight, format_weight and length_weight are all 0: there is nothing to reward.")
    if not 0 <= g.min_p < 1 or not 0 < g.vllm_memory < 1:
        out.append(f"grpo.min_p ({g.min_p}) must be in [0, 1) and grpo.vllm_memory ({g.vllm_memory}) in (0, 1).")
    return out


def _tracking(cfg) -> list[str]:
    """wandb online needs a key before hours of data preparation and loading, not after."""
    import netrc
    import os

    if cfg.tracking.wandb != "online" or cfg.tracking.api_key or os.environ.get("WANDB_API_KEY"):
        return []
    try:
        if netrc.netrc().authenticators("api.wandb.ai"):  # where `wandb login` keeps it
            return []
    except (OSError, netrc.NetrcParseError):
        pass
    return ["tracking.wandb is online but no W&B API key is set: export WANDB_API_KEY=<key> (or run `wandb login`), "
            "or use tracking.wandb=offline and `wandb sync` the run later."]


def _paths(cfg) -> list[str]:
    out = []
    if cfg.model.source == "local" and cfg.model.name != "tiny" and not Path(cfg.model.name).expanduser().is_dir():
        out.append(f"model.name {shown(cfg.model.name)} is not a folder, and model.source is local.")
    if cfg.model.adapter and not Path(cfg.model.adapter).expanduser().is_dir():
        out.append(f"model.adapter {shown(cfg.model.adapter)} is not a folder.")
    resume = cfg.train.resume
    if resume not in ("auto", "never") and not Path(resume, "trainer_state.json").expanduser().is_file():
        out.append(f"train.resume is {shown(resume)}; use auto (the newest checkpoint of the run), never (start over) "
                   "or a checkpoint folder (one holding trainer_state.json).")
    return out + _eval_paths(cfg.eval)


def _eval_paths(e) -> list[str]:
    from kit.evaluation.benchmark_sets import BENCHMARKS

    out = []
    if e.math not in ("heldout", *BENCHMARKS) and not Path(e.math).expanduser().is_file():
        out.append(f"eval.math '{e.math}' is neither a file nor one of heldout, {', '.join(BENCHMARKS)}.")
    if e.instructions and not Path(e.instructions).expanduser().is_file():
        out.append(f"eval.instructions '{e.instructions}' is not a file (\"\" skips instruction following).")
    if e.adapter not in ("final", "newest") and not Path(e.adapter).expanduser().is_dir():
        out.append(f"eval.adapter '{e.adapter}' is not a folder; use final, newest or an adapter folder.")
    for key in ("endpoint", "base_endpoint"):
        url = getattr(e, key)
        if url and not url.startswith(("http://", "https://")):
            out.append(f"eval.{key} '{url}' is not an http(s) URL (e.g. http://localhost:8000/v1).")
    return out


def _names_libraries_accept(cfg) -> list[str]:
    out = []
    optimizers = library_names("training_args.py", "OptimizerNames") | {"auto"}
    if cfg.train.optim not in optimizers:
        out.append(f"train.optim is '{cfg.train.optim}'; use auto (adamw_8bit on a GPU, adamw_torch on a CPU) or "
                   f"one of transformers' optimizers, e.g. {', '.join(sorted(optimizers)[:8])}, ...")
    schedulers = library_names("trainer_utils.py", "SchedulerType")
    if cfg.train.lr_scheduler_type not in schedulers:
        out.append(f"train.lr_scheduler_type is '{cfg.train.lr_scheduler_type}'; use one of {sorted(schedulers)}.")
    targets = cfg.lora.target_modules
    if not targets or set(targets) - set(PROJECTIONS):
        out.append(f"lora.target_modules is {targets}; use all-linear or any of the Qwen3 projections {PROJECTIONS}.")
    return out


@cache
def library_names(file: str, enum: str) -> frozenset[str]:
    """The string values of an enum in transformers' `file`, read from its source: importing transformers while the
    config is checked would come before unsloth's import (kit.training.backends.activate_backend), which must come first."""
    spec = importlib.util.find_spec("transformers")  # finds the package without importing it
    tree = ast.parse(Path(spec.submodule_search_locations[0], file).read_text(encoding="utf-8"))
    body = next(node.body for node in tree.body if isinstance(node, ast.ClassDef) and node.name == enum)
    return frozenset(node.value.value for node in body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))


def _source_problems(src, where: str) -> list[str]:
    out = []
    for key in ("format", "hub", "role"):
        allowed = CHOICES[f"source.{key}"]
        if getattr(src, key) not in allowed:
            out.append(f"{where}.{key} is '{getattr(src, key)}'; use one of {sorted(allowed)}.")
    if not src.path:
        out.append(f"{where}.path is empty; give a file, a glob, or a dataset id.")
    elif src.hub == "local" and not local_matches(src.path):
        out.append(f"{where}.path {shown(src.path)} matches no file.")
    if src.max_rows < 0 or src.max_chars < 0:
        out.append(f"{where}.max_rows and max_chars must be >= 0 (0 = no limit).")
    if not 0 <= src.heldout < 1:
        out.append(f"{where}.heldout is {src.heldout}; it is the share of problems kept for eval, in [0, 1).")
    if not 0 <= src.min_pass_rate <= src.max_pass_rate <= 1:
        out.append(f"{where}: need 0 <= min_pass_rate <= max_pass_rate <= 1, "
                   f"got {src.min_pass_rate} and {src.max_pass_rate}.")
    return out


def _sources(cfg) -> list[str]:
    sources = [("data.reasoning", cfg.data.reasoning), ("data.chat", cfg.data.chat)]
    sources += [(f"data.extra[{i}]", s) for i, s in enumerate(cfg.data.extra)]
    out = []
    unread = {1: "data.reasoning", 0: "data.chat"}.get(cfg.data.chat_ratio)  # one side only: the other is not read
    for where, src in sources:
        if where != unread:
            out += _source_problems(src, where)
    return out
