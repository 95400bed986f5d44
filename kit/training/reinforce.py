"""After SFT, reinforce math with GRPO on the same GPU: rewards for answers a program can check, resumable like SFT.

    result = grpo(load_config("configs/smoke.yaml"))     # runs/smoke/adapter, reinforced into runs/smoke-grpo
    result.rewards, result.checks["before"], result.checks["after"]

Each step samples grpo.num_generations completions for each of grpo.prompts_per_step problems (kit.data.prompts:
data.reasoning's problems with answers, held-out ones left out), rewards them (kit.training.rewards) and moves the LoRA
towards the completions that scored above their group's mean (TRL's GRPOTrainer, kit.training.grpo_trainer).

The run folder is a run folder as SFT's (kit.training.runs): config.yaml, data_report.json (the prompts),
logs/metrics.jsonl (each reward on its own, completion lengths), checkpoints/, adapter/ (whole or absent), so `qwen3-kit
export --run` and `qwen3-kit eval --run` take it unchanged; resume, the run lock, the SIGTERM checkpoint and wandb are
SFT's own (kit.training.sft). The adapter is the SFT run's trained further (grpo.start_from=sft) or a new one on the
base. With grpo.eval_before_after the model is scored on eval.* before the first step and after the last
(logs/before_after.json): RL on thinking traces is known to erode the non-thinking mode, and this shows it.
"""

from __future__ import annotations

import importlib.util
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from kit.config import Config, ConfigError, load_config
from kit.errors import KitError
from kit.files import read_cache, write_atomic, writing_into
from kit.training import guards
from kit.training.backends import activate_backend, load_for_training, load_tokenizer
from kit.training.metrics import read_metrics
from kit.training.runs import GRPO_IDENTITY, finished_run, record_config, resume_point, run_lock, verify_adapter
from kit.training.sft import Run, TrainResult, already_trained, announce, model_lines, run_trainer, vram_line
from kit.training.trainer import generating, metrics_log, optimizer_name, stop_request


@dataclass
class GrpoResult(TrainResult):
    rewards: list[tuple[int, float]] = field(default_factory=list)  # (step, mean weighted reward of its completions)
    checks: dict = field(default_factory=dict)  # {"before": report, "after": report} of kit.evaluation.scores.evaluate


def start(cfg: Config) -> Config:
    """`cfg` with grpo.run_name decided and, for grpo.start_from=sft, model.adapter set to the SFT run's adapter:
    what config.yaml records, so a resume continues the same run."""
    g = cfg.grpo
    if g.max_prompt_length + g.max_completion_length > cfg.model.max_seq_length:
        raise ConfigError(f"grpo.max_prompt_length + grpo.max_completion_length is {g.max_prompt_length} + "
                          f"{g.max_completion_length}, more than model.max_seq_length {cfg.model.max_seq_length}; "
                          "shorten one, or raise model.max_seq_length.")
    e = cfg.eval
    if g.eval_before_after and e.n_math and e.math == "heldout" and not cfg.data.reasoning.heldout:
        raise ConfigError("grpo.eval_before_after scores the held-out math problems (eval.math=heldout), but "
                          "data.reasoning.heldout is 0: hold some out, set eval.math to math500, gsm8k, aime24, "
                          "aime25 or a file, or set grpo.eval_before_after=false.")
    name = g.run_name or (f"{cfg.train.run_name}-grpo" if cfg.train.run_name else time.strftime("grpo-%Y%m%d-%H%M%S"))
    adapter = str(_sft_run(cfg) / "adapter") if g.start_from == "sft" else cfg.model.adapter
    return replace(cfg, model=replace(cfg.model, adapter=adapter), grpo=replace(g, run_name=name))


def _sft_run(cfg: Config) -> Path:
    """The finished SFT run of this config, which must have held out the same problems as this run will."""
    if not cfg.train.run_name:
        raise KitError("grpo.start_from=sft continues the SFT run named by train.run_name, which is empty: set it, or "
                       "grpo.start_from=base.")
    try:
        run = finished_run(cfg)
    except KitError as e:
        raise KitError(f"{e} GRPO continues it (grpo.start_from=sft; base starts from the base model).") from None
    verify_adapter(run / "adapter")
    saved = load_config(run / "config.yaml").data.reasoning.heldout
    if saved != cfg.data.reasoning.heldout:
        raise KitError(f"{run} held out {saved} of data.reasoning's problems and this config holds out "
                       f"{cfg.data.reasoning.heldout}: set data.reasoning.heldout={saved}, so that eval's held-out "
                       "problems stay unseen by both stages.")
    return run


def generation(cfg: Config, backend: str) -> str:
    """vllm (Unsloth's fast_inference) or hf (transformers' generate): what grpo.generation asks, where possible."""
    wanted, installed = cfg.grpo.generation, importlib.util.find_spec("vllm") is not None
    if wanted == "vllm" and backend != "unsloth":
        raise KitError("grpo.generation=vllm shares the weights through Unsloth's fast_inference, so it needs the "
                       "unsloth backend (a CUDA GPU); set grpo.generation=hf or auto.")
    if wanted == "vllm" and not installed:
        raise KitError("grpo.generation=vllm, but vLLM is not installed: pip install vllm, or set grpo.generation=hf "
                       "or auto.")
    return "vllm" if wanted == "vllm" or (wanted == "auto" and backend == "unsloth" and installed) else "hf"


def format_plan(run: Run, model_folder: Path) -> str:
    """What the GRPO run will do, printed before the model loads."""
    import torch

    from kit.models.memory import grpo_estimate_for

    cfg, g, on_gpu = run.cfg, run.cfg.grpo, torch.cuda.is_available()
    engine = generation(cfg, run.backend)
    vram = grpo_estimate_for(cfg, run.backend) if on_gpu else None
    vllm = f"; vLLM takes grpo.vllm_memory={g.vllm_memory:g} of the GPU instead" if engine == "vllm" else ""
    completions = g.prompts_per_step * g.num_generations
    weights = {"correct": g.correct_weight, "format": g.format_weight, "length": -g.length_weight}
    return "\n".join([
        "plan:",
        *model_lines(cfg, run.backend, model_folder, on_gpu),
        f"  start     {cfg.model.adapter + ' (continued)' if cfg.model.adapter else 'a new LoRA on the base model'}",
        f"  backend   {run.backend}, optimizer {optimizer_name(cfg, on_gpu)}, generation "
        f"{'vLLM (Unsloth fast_inference)' if engine == 'vllm' else 'transformers generate'}",
        vram_line(vram, on_gpu) + vllm,
        f"  steps     {run.steps} x {g.prompts_per_step} problems x {g.num_generations} completions of up to "
        f"{g.max_completion_length} tokens = {completions * g.max_completion_length:,} tokens generated a step at "
        f"most; passes of {g.per_device_train_batch_size}, lr {g.learning_rate:g}, beta {g.beta:g}",
        f"  rewards   {', '.join(f'{k} x{w:g}' for k, w in weights.items() if w)}; thinking "
        f"{'on' if g.thinking else 'off'}, temperature {g.temperature:g}",
        f"  output    {run.folder}",
    ])


def prepare(cfg: Config, backend: str, state, folder: Path) -> Run:
    """Where the run resumes, its config recorded (a resume that would continue a different run refused), the
    prompts and their report written, and the plan printed."""
    from kit.data.prompts import format_prompts, grpo_prompts

    resume = resume_point(cfg, folder)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    record_config(cfg, folder, resume, GRPO_IDENTITY)
    tokenizer = load_tokenizer(cfg)
    prompts = grpo_prompts(cfg, tokenizer)
    prompts.report["start"] = cfg.model.adapter or "base"
    run = Run(cfg, backend, folder, prompts, cfg.grpo.max_steps, 1, resume, state)
    announce(run, format_prompts(prompts.report), format_plan(run, tokenizer.name_or_path))
    return run


def score(run: Run, model, tokenizer, when: str, questions: tuple, progress: bool = True) -> dict:
    """kit.evaluation.scores's report (math, the thinking switch, instructions: `questions`,
    kit.evaluation.scores.eval_set's) for the model as it is `when` (before or after GRPO)."""
    from kit.evaluation.scores import evaluate, local_generator

    e = run.cfg.eval
    math, instructions = questions
    start = run.cfg.model.adapter or f"{run.cfg.model.name} + a new LoRA"
    with generating(run.backend, run.cfg, model, tokenizer):
        generate = local_generator(model, tokenizer, max_new_tokens=e.max_new_tokens, seed=e.seed,
                                   batch_size=e.batch_size, progress=f"{when} GRPO" if progress else None)
        return {"model": start if when == "before" else str(run.folder / "adapter"),
                **evaluate(generate, math, instructions)}


def _checks_path(run: Run) -> Path:
    return run.folder / "logs" / "before_after.json"


def _saved_checks(run: Run) -> dict:
    return read_cache(_checks_path(run)) or {}


def fit(run: Run, callbacks: list | None = None, progress: bool = True) -> TrainResult:
    """Load the model (with a vLLM engine where generation uses one), score it before the first step, train from the
    resume point (kit.training.sft.run_trainer: signals, tracking, the adapter) and score it after the last."""
    from transformers import set_seed

    from kit.evaluation.scores import eval_set
    from kit.training.grpo_trainer import build_grpo_trainer

    set_seed(run.cfg.train.seed)
    model, tokenizer = load_for_training(run.cfg, run.backend, vllm=generation(run.cfg, run.backend) == "vllm")
    guards.pad_token(model, tokenizer)
    checks, wanted = _saved_checks(run), run.cfg.grpo.eval_before_after and run.main
    questions = eval_set(run.cfg) if wanted else ()
    if wanted and not run.resume and "before" not in checks:  # a resumed run was scored when it began
        _record_check(run, checks, "before", model, tokenizer, questions, progress)
    stop = stop_request()
    trainer = build_grpo_trainer(run.cfg, model, tokenizer, run.prepared.train, run.folder, progress=progress,
                                 callbacks=[metrics_log(run.folder), stop, guards.finite_loss(), *(callbacks or [])],
                                 rollout_check=lambda prompts, completions: _rollout_gap(run, model, tokenizer, prompts,
                                                                                         completions))
    result = run_trainer(run, trainer, stop)
    if wanted and not result.interrupted:
        _record_check(run, checks, "after", model, tokenizer, questions, progress)
    return result


def _rollout_gap(run: Run, model, tokenizer, prompt_ids: list, completion_ids: list) -> float:
    """kit.training.guards.rollout_gap of rollouts, the model switched to inference (Unsloth returns logits there)."""
    with generating(run.backend, run.cfg, model, tokenizer):
        return guards.rollout_gap(model, prompt_ids, completion_ids)


def _record_check(run: Run, checks: dict, when: str, model, tokenizer, questions: tuple, progress: bool) -> None:
    checks[when] = score(run, model, tokenizer, when, questions, progress)
    write_atomic(_checks_path(run), json.dumps(checks, indent=2, ensure_ascii=False))


def score_missing_after(run: Run, progress: bool = True) -> None:
    """A finished run stopped while it was being scored after GRPO (its adapter already written): scored now."""
    checks = _saved_checks(run)
    if not (run.cfg.grpo.eval_before_after and run.main) or "after" in checks:
        return
    from kit.evaluation.scores import eval_set

    tuned = replace(run.cfg, model=replace(run.cfg.model, adapter=str(run.folder / "adapter")))
    model, tokenizer = load_for_training(tuned, run.backend)
    _record_check(run, checks, "after", model, tokenizer, eval_set(run.cfg), progress)


def _with_rewards(result: TrainResult, run: Run) -> GrpoResult:
    rewards = [(r["step"], r["reward"]) for r in read_metrics(run.folder) if "reward" in r]
    return GrpoResult(**vars(result), rewards=rewards, checks=_saved_checks(run))


def grpo(cfg: Config, *, progress: bool = True, callbacks: list | None = None) -> GrpoResult:
    """Reinforce the SFT run's adapter (or a new one) with GRPO into `<train.output_dir>/<grpo.run_name>`.

    Rerun the same call to resume after a preemption; `callbacks` are extra `transformers.TrainerCallback`s. Raises
    KitError when the SFT run to start from is missing or held out other problems, or on torchrun: GRPO runs on one
    GPU.
    """
    backend = activate_backend(cfg.train.backend, cfg.model.name)  # unsloth before transformers/trl/peft
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes > 1:
        raise KitError("GRPO runs on one GPU: start it with python or qwen3-kit, not torchrun or accelerate launch.")
    cfg = start(cfg)
    folder = Path(cfg.train.output_dir) / cfg.grpo.run_name
    with run_lock(folder), writing_into(folder):
        run = prepare(cfg, backend, state, folder)
        done = already_trained(run)
        if done:
            score_missing_after(run, progress)
        return _with_rewards(done or fit(run, callbacks, progress), run)
