"""qwen3-kit: LoRA fine-tuning of Qwen3 on one GPU, from ModelScope weights to a vLLM-ready export.

`import kit` stays light (no torch/transformers): names are imported from their modules on first use, so a notebook
can call `kit.activate_backend("auto")` before anything imports transformers, as Unsloth requires.
"""

import sys
from importlib import import_module
from types import ModuleType

from kit.paths import PROJECT_ROOT

_EXPORTS = {
    "config": ["Config", "ConfigError", "load_config", "save_config"],
    "paths": ["cache_root"],
    "qwen3": ["FAMILY"],
    "hub": ["HubError", "catalog_table", "download_model", "resolve_repo", "resolve_model"],
    "memory": ["estimate", "recommend", "plan_table"],
    "data": ["prepare_data", "format_report", "ratio_sweep", "render", "show_row"],
    "random_qwen3": ["build_tiny_model"],
    "backends": ["activate_backend", "environment", "load_tokenizer", "linear_modules"],
    "train": ["train", "TrainResult"],
    "grpo": ["grpo", "GrpoResult"],
    "runs": ["finished_run"],
    "sweep": ["run_sweep", "plan_sweep", "format_table"],
    "metrics": ["read_metrics", "eval_curves"],
    "notebook": ["setup"],
    "infer": ["load_for_inference", "generate", "generate_batched", "chat", "side_by_side", "split_reasoning",
              "PRESETS"],
    "export": ["export_run", "with_thinking_default"],
    "evaluate": ["evaluate", "evaluate_run", "compare", "show_replies"],
    "answers": ["math_correct"],
    "benchmarks": ["BENCHMARKS", "math_rows"],
    "instructions": ["load_instructions"],
    "endpoint": ["endpoint_generator"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE) + ["PROJECT_ROOT"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'kit' has no attribute '{name}'")
    return getattr(import_module(f"kit.{_WHERE[name]}"), name)


class _Kit(ModuleType):
    """`kit.train` is the function even once kit/train.py, which shares its name, is imported (the import system then
    sets the submodule as the package's attribute): a cell `kit.train(cfg)` runs again to resume. Likewise grpo and
    evaluate."""

    def __getattribute__(self, name: str):
        value = super().__getattribute__(name)
        if isinstance(value, ModuleType) and _WHERE.get(name) == name:
            return getattr(value, name)
        return value


sys.modules[__name__].__class__ = _Kit
