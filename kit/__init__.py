"""qwen3-kit: LoRA fine-tuning of Qwen3 on one GPU, from ModelScope weights to a vLLM-ready export.

The packages read as the path of a run: `config` (one tree of settings), `models` (profiles, downloads, memory),
`data` (sources -> chat template -> mix), `training` (SFT, GRPO, run folders), `inference` (chat, servers),
`evaluation` (scores, sweeps), `export` (adapter, merged 16-bit). `import kit` stays light (no torch/transformers):
names are imported from their modules on first use, so a notebook can call `kit.activate_backend("auto")` before
anything imports transformers, as Unsloth requires.
"""

from importlib import import_module

from kit import machine  # noqa: F401  (sets how torch's threads wait, before anything imports torch)
from kit.paths import PROJECT_ROOT

_EXPORTS = {
    "config": ["Config", "ConfigError", "load_config", "save_config"],
    "paths": ["cache_root"],
    "models.profiles": ["PROFILES"],
    "hub": ["HubError", "catalog_table", "download_model", "resolve_repo", "resolve_model"],
    "models.memory": ["estimate", "recommend", "plan_table"],
    "models.tiny": ["build_tiny_model"],
    "data": ["prepare_data", "format_report", "ratio_sweep", "render", "show_row"],
    "training.backends": ["activate_backend", "environment", "load_tokenizer", "linear_modules"],
    "training.sft": ["train", "TrainResult"],
    "training.reinforce": ["grpo", "GrpoResult"],
    "training.runs": ["finished_run"],
    "training.metrics": ["read_metrics", "eval_curves"],
    "notebook": ["setup"],
    "inference.generate": ["load_for_inference", "generate", "generate_batched", "chat", "side_by_side",
                           "split_reasoning", "PRESETS"],
    "inference.endpoint": ["endpoint_generator"],
    "export.export": ["export_run", "with_thinking_default"],
    "evaluation.scores": ["evaluate", "evaluate_run", "compare", "show_replies"],
    "evaluation.answers": ["math_correct"],
    "evaluation.benchmarks": ["BENCHMARKS", "math_rows"],
    "evaluation.instructions": ["load_instructions"],
    "evaluation.sweep": ["run_sweep", "plan_sweep", "format_table"],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE) + ["PROJECT_ROOT"]


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'kit' has no attribute '{name}'")
    return getattr(import_module(f"kit.{_WHERE[name]}"), name)
