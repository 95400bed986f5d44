"""Hand-off to the harnesses users trust (EvalScope and lm-evaluation-harness configs for the served export, one per
thinking mode), and Qwen's published figures beside the kit's own.
"""

from __future__ import annotations

from pathlib import Path

from kit.models.profiles import PRESETS, find

SOURCE = "Qwen3 Technical Report, arXiv 2505.09388, Tables 13-20"
BENCHMARKS = {  # the kit's eval.math (or "instructions") -> the benchmark, EvalScope's and lm-eval's task names
    "math500": ("MATH-500", "math_500", "hendrycks_math500"),
    "aime24": ("AIME'24", "aime24", "aime24"),
    "aime25": ("AIME'25", "aime25", "aime25"),
    "instructions": ("IFEval strict prompt", "ifeval", "ifeval"),
}
PUBLISHED = {  # size -> the figures of BENCHMARKS in order, (thinking, non-thinking), percent, as SOURCE prints them
    "0.6B": [(77.6, 55.2), (10.7, 3.4), (15.1, 2.6), (59.2, 54.5)],
    "1.7B": [(93.4, 73.0), (48.3, 13.4), (36.8, 9.8), (72.5, 68.2)],
    "4B": [(97.0, 84.8), (73.8, 25.0), (65.6, 19.1), (81.9, 81.2)],
    "8B": [(97.4, 87.4), (76.0, 29.1), (67.3, 20.9), (85.0, 83.0)],
    "14B": [(96.8, 90.0), (79.3, 31.7), (70.4, 23.3), (85.4, 84.8)],
    "32B": [(97.2, 88.6), (81.4, 31.0), (72.9, 20.2), (85.0, 83.2)],
}
MAX_TOKENS = 32768  # Qwen's advice for the output length of most queries (the model card)
MODES = {"thinking": True, "non-thinking": False}


def published_table(reports: dict[str, dict], cfg) -> str:
    """Qwen's published figures for the base size beside the user's (math row as eval.math, the instruction row); ""
    for a model they do not cover (the tiny one)."""
    profile = find(cfg.model.name)
    if profile is None or profile.size not in PUBLISHED:
        return ""
    scored = {cfg.eval.math: "math", "instructions": "instructions"}
    lines = [f"published for {profile.name} ({SOURCE}), thinking on / off, percent:",
             f"  {'benchmark':<24}{'published':>14}" + "".join(f"{name:>16}" for name in reports)]
    for (key, (benchmark, _, _)), figures in zip(BENCHMARKS.items(), PUBLISHED[profile.size], strict=True):
        ours = [tuple(r.get(f"{scored[key]}_thinking_{m}") if key in scored else None for m in ("on", "off"))
                for r in reports.values()]
        cells = ["-" if None in pair else f"{100 * pair[0]:.1f} / {100 * pair[1]:.1f}" for pair in ours]
        lines.append(f"  {benchmark + ('*' if key == 'instructions' else ''):<24}{figures[0]:>7.1f} / "
                     f"{figures[1]:<4.1f}" + "".join(f"{c:>16}" for c in cells))
    lines.append("  * yours: eval.instructions, not IFEval's 541 prompts; --harnesses writes configs that score IFEval")
    return "\n".join(lines)


def _evalscope(url: str, model: str, thinking: bool, out: Path) -> dict:
    return {
        "model": model, "api_url": url, "api_key": "EMPTY", "eval_type": "openai_api",
        "datasets": [names[1] for names in BENCHMARKS.values()],
        "dataset_args": {names[1]: {"filters": {"remove_until": "</think>"}} for names in BENCHMARKS.values()},
        "eval_batch_size": 8, "work_dir": str(out),
        "generation_config": {"max_tokens": MAX_TOKENS, **_sampling(thinking, extra_body=True)},
    }


def _lm_eval(url: str, model: str, thinking: bool, out: Path) -> dict:
    return {
        "model": "local-chat-completions",
        "model_args": {"model": model, "base_url": f"{url.rstrip('/')}/chat/completions", "num_concurrent": 8,
                       "tokenized_requests": False, "think_end_token": "</think>"},
        "tasks": [names[2] for names in BENCHMARKS.values()], "apply_chat_template": True,
        "gen_kwargs": {"max_gen_toks": MAX_TOKENS, **_sampling(thinking, extra_body=False)},
        "output_path": str(out), "log_samples": True,
    }


def _sampling(thinking: bool, extra_body: bool) -> dict:
    """Qwen's preset for the mode and the switch, as the request carries them (top_k and chat_template_kwargs are
    vLLM's own fields: EvalScope's OpenAI client sends them in extra_body, lm-eval's payload as they are)."""
    preset = PRESETS[thinking]
    own = {"top_k": preset["top_k"], "chat_template_kwargs": {"enable_thinking": thinking}}
    common = {"temperature": preset["temperature"], "top_p": preset["top_p"]}
    return common | ({"extra_body": own} if extra_body else own)


def write_configs(folder: Path, cfg) -> str:
    """EvalScope's and lm-evaluation-harness's configs, one per thinking mode, against `cfg.eval.endpoint` (default
    vLLM's http://localhost:8000/v1) serving `cfg.eval.endpoint_model` (default qwen3-kit); returns how to run them."""
    import yaml

    from kit.files import write_atomic

    url, model = cfg.eval.endpoint or "http://localhost:8000/v1", cfg.eval.endpoint_model or "qwen3-kit"
    lines = [f"harness configs for {model} at {url} (serve the export first: qwen3-kit export prints the command):"]
    for mode, thinking in MODES.items():
        for harness, build, run in (("evalscope", _evalscope, "python -c \"from evalscope import run_task; "
                                                              "run_task('{}')\""),
                                    ("lm_eval", _lm_eval, "lm-eval run --config {}")):
            path = folder / f"{harness}_{mode}.yaml"
            write_atomic(path, yaml.safe_dump(build(url, model, thinking, folder / f"{harness}_{mode}"),
                                              sort_keys=False))
            lines.append(f"  {run.format(path)}")
    return "\n".join(lines)
