"""Every value of a config checked before any work starts, each problem naming the key and the fix: the ranges the
fields declare, and what no single field can say (paths, library names, shares, GRPO's batch arithmetic).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
from functools import cache
from pathlib import Path

from kit.paths import local_matches, shown


def problems(cfg) -> list[str]:
    """Every problem with `cfg`'s values; empty when it can be used."""
    return [*_ranges(cfg), *_steps(cfg), *_model(cfg.model), *_paths(cfg), *_library_names(cfg), *_sources(cfg.data),
            *_tracking(cfg), *_grpo(cfg.grpo)]


def _ranges(node, where: str = "") -> list[str]:
    """The `range=(low, high)` each field's metadata declares, through the whole tree."""
    out = []
    for f in dataclasses.fields(node):
        value, key, m = getattr(node, f.name), f"{where}{f.name}", f.metadata
        if dataclasses.is_dataclass(value):
            out += _ranges(value, key + ".")
        elif isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
            out += [p for i, item in enumerate(value) for p in _ranges(item, f"{key}[{i}].")]
        elif "range" in m and value is not None:
            low, high = m["range"]
            low_ok = low is None or (value > low if m.get("above") else value >= low)
            high_ok = high is None or (value < high if m.get("open") else value <= high)
            if not (low_ok and high_ok):
                bounds = f"{'above' if m.get('above') else 'at least'} {low}" if high is None else \
                    f"in {'(' if m.get('above') else '['}{low}, {high}{')' if m.get('open') else ']'}"
                out.append(f"{key} is {value}; it must be {bounds} ({m['help'].split(';')[0].split(':')[0]}).")
    return out


def _steps(cfg) -> list[str]:
    if cfg.train.max_steps == 0 and cfg.train.num_train_epochs <= 0:
        return ["train.max_steps and train.num_train_epochs are both 0; set one of them."]
    return []


def _model(m) -> list[str]:
    """A Qwen3 name is one the kit trains; repo ids and folders pass unless they name a model the kit refuses."""
    from kit.models.profiles import find, nearest

    profile = find(m.name)
    if profile and profile.refused:
        return [f"model.name is '{m.name}': {profile.name} {profile.refused}."]
    if profile is None and m.name != "tiny" and m.source != "local" and "/" not in m.name:
        near = nearest(m.name)
        return [f"model.name '{m.name}' is no Qwen3 model the kit knows" +
                (f"; did you mean {' or '.join(near)}?" if near else " (`qwen3-kit download` lists them).")]
    return []


def _paths(cfg) -> list[str]:
    from kit.evaluation.benchmark_sets import BENCHMARKS

    out, m, e = [], cfg.model, cfg.eval
    if m.source == "local" and m.name != "tiny" and not Path(m.name).expanduser().is_dir():
        out.append(f"model.name {shown(m.name)} is not a folder, and model.source is local.")
    if m.adapter and not Path(m.adapter).expanduser().is_dir():
        out.append(f"model.adapter {shown(m.adapter)} is not a folder.")
    resume = cfg.train.resume
    if resume not in ("auto", "never") and not Path(resume, "trainer_state.json").expanduser().is_file():
        out.append(f"train.resume is {shown(resume)}; use auto (the newest checkpoint of the run), never (start over) "
                   "or a checkpoint folder (one holding trainer_state.json).")
    if e.math not in ("heldout", *BENCHMARKS) and not Path(e.math).expanduser().is_file():
        out.append(f"eval.math '{e.math}' is neither a file nor one of heldout, {', '.join(BENCHMARKS)}.")
    if e.instructions and not Path(e.instructions).expanduser().is_file():
        out.append(f"eval.instructions '{e.instructions}' is not a file (\"\" skips instruction following).")
    if e.adapter not in ("final", "newest") and not Path(e.adapter).expanduser().is_dir():
        out.append(f"eval.adapter '{e.adapter}' is not a folder; use final, newest or an adapter folder.")
    for key in ("endpoint", "base_endpoint"):
        if (url := getattr(e, key)) and not url.startswith(("http://", "https://")):
            out.append(f"eval.{key} '{url}' is not an http(s) URL (e.g. http://localhost:8000/v1).")
    for key, folder in (("train.output_dir", cfg.train.output_dir), ("model.cache_dir", m.cache_dir),
                        ("export.out_dir", cfg.export.out_dir)):
        if folder and Path(folder).expanduser().is_file():
            out.append(f"{key} {shown(folder)} is a file; name a folder.")
    if not cfg.train.output_dir:
        out.append("train.output_dir is empty; name the folder runs go in (e.g. runs).")
    if not cfg.export.formats:
        out.append("export.formats is empty; give one or more of adapter, merged_16bit, merged_4bit_forced.")
    return out


def _library_names(cfg) -> list[str]:
    from kit.models.profiles import PROJECTIONS

    out = []
    optimizers = enum_values("training_args.py", "OptimizerNames") | {"auto"}
    if cfg.train.optim not in optimizers:
        out.append(f"train.optim is '{cfg.train.optim}'; use auto (adamw_8bit on a GPU, adamw_torch on a CPU) or "
                   f"one of transformers' optimizers, e.g. {', '.join(sorted(optimizers)[:8])}, ...")
    schedulers = enum_values("trainer_utils.py", "SchedulerType")
    if cfg.train.lr_scheduler_type not in schedulers:
        out.append(f"train.lr_scheduler_type is '{cfg.train.lr_scheduler_type}'; use one of {sorted(schedulers)}.")
    targets = cfg.lora.target_modules
    if not targets or set(targets) - set(PROJECTIONS):
        parts = [part.strip() for target in targets for part in target.split(",")]
        listed = len(parts) > len(targets) and not set(parts) - set(PROJECTIONS)  # q_proj,v_proj without brackets
        fix = f"a list is written lora.target_modules=[{','.join(parts)}]" if listed else \
            f"use all-linear or any of the Qwen3 projections {PROJECTIONS}"
        out.append(f"lora.target_modules is {targets}; {fix}.")
    return out


@cache
def enum_values(file: str, enum: str) -> frozenset[str]:
    """The string values of an enum in transformers' `file`, read from source: importing it now would precede
    unsloth."""
    spec = importlib.util.find_spec("transformers")  # finds the package without importing it
    tree = ast.parse(Path(spec.submodule_search_locations[0], file).read_text(encoding="utf-8"))
    body = next(node.body for node in tree.body if isinstance(node, ast.ClassDef) and node.name == enum)
    return frozenset(node.value.value for node in body if isinstance(node, ast.Assign)
                     and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))


def _sources(d) -> list[str]:
    """Each source the mix reads has a place to read from, and the shares leave room for the whole sources."""
    from kit.data.sources import mix_sources

    if d.chat.share is not None:
        return ["data.chat.share is set by data.chat_ratio; set that instead."]
    sources = mix_sources(d)
    if not sources:
        return ["the mix has no source: give data.reasoning.path, data.chat.path or data.sources."]
    out = []
    for name, src in sources:
        key = f"data.{name}" if name in ("reasoning", "chat") else f"data.sources[{d.sources.index(src)}]"
        if src.where == "local" and not local_matches(src.path):
            out.append(f"{key}.path {shown(src.path)} matches no file.")
        if not src.min_pass_rate <= src.max_pass_rate:
            out.append(f"{key}: min_pass_rate {src.min_pass_rate} is above max_pass_rate {src.max_pass_rate}.")
    shares = [src.share for _, src in sources if src.share is not None]
    whole = [name for name, src in sources if src.share is None]
    if whole and sum(shares) >= 1 or not whole and abs(sum(shares) - 1) > 1e-6:
        out.append(f"the shares of the sources add up to {sum(shares):g}: with sources that give all their rows "
                   f"({', '.join(whole)}) they must stay below 1, else add up to 1." if whole else
                   f"the shares of the sources add up to {sum(shares):g}; they must add up to 1.")
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


def _grpo(g) -> list[str]:
    """GRPO's batch arithmetic (its lengths are checked when GRPO starts: an SFT config need not fit them)."""
    out, completions = [], g.prompts_per_step * g.num_generations
    if g.per_device_train_batch_size and completions % g.per_device_train_batch_size:  # 0: a range problem
        out.append(f"grpo.per_device_train_batch_size is {g.per_device_train_batch_size}; it must divide the "
                   f"{completions} completions of a step (prompts_per_step x num_generations).")
    if not g.correct_weight + g.format_weight + g.length_weight:
        out.append("grpo.correct_weight, format_weight and length_weight are all 0: there is nothing to reward.")
    return out
