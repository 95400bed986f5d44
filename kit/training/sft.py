"""Train a LoRA adapter on the prepared mix with TRL's SFTTrainer, resumable after preemption.

    result = train(load_config("configs/smoke.yaml"))

`prepare_run` (folder, data, plan, where to resume), `fit` (model, trainer, signals) and `finish` (the adapter).
SIGTERM (a preempted rented GPU) or Ctrl-C saves a checkpoint before the process exits.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

from kit.config import Config
from kit.config.parse import redact_argv
from kit.config.schema import changed, to_dict
from kit.data import format_report, prepare_data
from kit.files import atomic_folder, write_atomic, writing_into
from kit.training import guards
from kit.training.backends import activate_backend, load_for_training, load_tokenizer
from kit.training.runs import (
    adapter_from_checkpoint,
    adapter_problem,
    checkpoint_step,
    has_adapter,
    keep_metrics_until,
    record_config,
    resume_point,
    run_folder,
    run_lock,
)
from kit.training.trainer import build_trainer, by_source, metrics_log, optimizer_name, stop_request, switch_check


@dataclass
class TrainResult:
    run_dir: Path
    adapter_dir: Path
    backend: str
    steps: int
    interrupted: bool  # stopped by SIGTERM/Ctrl-C; a checkpoint was saved, rerun to resume
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    eval_losses: list[tuple[int, float]] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    wandb: str = ""  # the run's URL (online), or its local folder (offline: `wandb sync <folder>`)
    main_process: bool = True  # False on the other ranks of a distributed run
    signal: int = 0  # the signal that stopped it (SIGTERM, SIGINT), when interrupted


@dataclass
class Run:
    """What is decided before the model loads: the folder, the data, the length, and where training resumes."""

    cfg: Config
    backend: str
    folder: Path
    prepared: object  # kit.data.Prepared
    steps: int
    epochs: int  # the mixes prepared: one, or one per epoch with data.redraw_each_epoch
    resume: str | None  # the checkpoint to continue from
    state: object  # accelerate's PartialState: this process's place in a distributed run

    @property
    def main(self) -> bool:
        return self.state.is_main_process

    def result(self, history: list[dict], steps: int, interrupted: bool, metrics: dict | None = None) -> TrainResult:
        return TrainResult(
            run_dir=self.folder, adapter_dir=self.folder / "adapter", backend=self.backend, steps=steps,
            interrupted=interrupted, losses=[(h["step"], h["loss"]) for h in history if "loss" in h],
            eval_losses=[(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h],
            metrics=metrics or {}, main_process=self.main)


def total_steps(cfg: Config, rows: int, epochs: int) -> int:
    if cfg.train.max_steps:
        return cfg.train.max_steps
    batch = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
    return max(1, math.ceil(math.ceil(rows / epochs / batch) * cfg.train.num_train_epochs))


def steps_note(cfg: Config, rows: int, epochs: int) -> list[str]:
    """Where train.num_train_epochs is set beside train.max_steps (default 30), the plan's line saying which wins."""
    t = cfg.train
    if not t.max_steps or "train.num_train_epochs" not in changed(cfg):
        return []
    by_epochs = total_steps(replace(cfg, train=replace(t, max_steps=0)), rows, epochs)
    return [f"  note      train.max_steps={t.max_steps} wins over train.num_train_epochs={t.num_train_epochs:g} (as "
            f"in TRL); for {t.num_train_epochs:g} epochs ({by_epochs} steps) set train.max_steps=0"]


def mix_epochs(cfg: Config) -> int:
    """The mixes a run prepares: one, or one per epoch with data.redraw_each_epoch."""
    return max(1, math.ceil(cfg.train.num_train_epochs)) if cfg.data.redraw_each_epoch else 1


def epoch_share(run: Run) -> str:
    """How much of one epoch's mix the steps cover, in rows (packed: tokens)."""
    t, mix = run.cfg.train, run.prepared.report["mix"]
    batch = t.per_device_train_batch_size * t.gradient_accumulation_steps * run.state.num_processes
    seen, epoch, unit = run.steps * batch, len(run.prepared.train) / run.epochs, "rows"
    if t.packing:
        seen, epoch, unit = seen * run.cfg.model.max_seq_length, mix["train_tokens"] / run.epochs, "tokens"
    share = f"{seen / epoch:.1%} of an epoch" if seen < epoch else f"{seen / epoch:.2f} epochs"
    return f"{seen:,} {unit}, {share} ({epoch:,.0f} {unit})"


def model_lines(cfg: Config, backend: str, model_folder: Path, on_gpu: bool) -> list[str]:
    """The plan's first lines, the same for every trainer: the model, its precision, the LoRA."""
    from kit.training.backends import precision

    return [f"  model     {cfg.model.name} ({model_folder}), {precision(cfg, backend, on_gpu)}",
            f"  LoRA      r={cfg.lora.r} alpha={cfg.lora.lora_alpha} on {', '.join(cfg.lora.target_modules)}"]


def vram_line(estimate, on_gpu: bool) -> str:
    """The plan's VRAM line, the same for every trainer: kit.models.memory's estimate, where there is one."""
    return f"  VRAM      {estimate or ('n/a (not a known dense Qwen3)' if on_gpu else 'none (CPU run)')}"


def format_plan(run: Run, model_folder: Path) -> str:
    import torch

    from kit.models.memory import estimate_for

    cfg, mix, on_gpu = run.cfg, run.prepared.report["mix"], torch.cuda.is_available()
    vram = estimate_for(cfg, run.backend) if on_gpu else None
    batch = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
    return "\n".join([
        "plan:",
        *model_lines(cfg, run.backend, model_folder, on_gpu),
        f"  backend   {run.backend}, optimizer {optimizer_name(cfg, on_gpu)}",
        vram_line(vram, on_gpu),
        f"  data      {mix['train_rows']} train rows ({mix['reasoning_rows']} reasoning, {mix['chat_rows']} chat), "
        f"{mix['eval_rows']} eval; chat {mix['chat_share_rows']:.1%} of rows, "
        f"{mix['chat_share_trained_tokens']:.1%} of trained tokens",
        f"  steps     {run.steps} x batch {batch} ({cfg.train.per_device_train_batch_size} x "
        f"{cfg.train.gradient_accumulation_steps} accumulation) = {epoch_share(run)}, lr {cfg.train.learning_rate:g}",
        switch_line(cfg, run.steps, mix["eval_rows"]),
        *steps_note(cfg, len(run.prepared.train), run.epochs),
        f"  output    {run.folder}",
    ])


def switch_line(cfg: Config, steps: int, eval_rows: int) -> str:
    """The plan's line for the thinking-switch check (kit.training.trainer.switch_check): what it costs."""
    from kit.training.trainer import SWITCH_PROMPTS

    t = cfg.train
    if not (t.switch_tokens and eval_rows):
        return f"  switch    not checked ({'train.switch_tokens=0' if eval_rows else 'no eval rows'})"
    every = t.eval_steps or t.save_steps
    checks = steps // every + 1
    return (f"  switch    {len(SWITCH_PROMPTS)} prompts x 2 modes, up to {t.switch_tokens} new tokens each, at step 0 "
            f"and every {every} steps ({checks} check{'s' * (checks > 1)}); a drop of {t.switch_drop:g} warns")


def prepare_run(cfg: Config, backend: str, state, folder: Path, progress: bool = True) -> Run:
    """Resume point, recorded config, prepared data (rank 0 first) and the report and plan printed."""
    resume = resume_point(cfg, folder) if state.is_main_process else None
    if state.is_main_process:
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        record_config(cfg, folder, resume)
    epochs = mix_epochs(cfg)
    with state.main_process_first():
        tokenizer = load_tokenizer(cfg)
        prepared = prepare_data(cfg, tokenizer, epochs=epochs, progress=progress and state.is_main_process)
    if state.num_processes > 1:  # every rank resumes from the checkpoint rank 0 chose
        from accelerate.utils import broadcast_object_list

        resume = broadcast_object_list([resume], from_process=0)[0]
    run = Run(cfg, backend, folder, prepared, total_steps(cfg, len(prepared.train), epochs), epochs, resume, state)
    if run.main:
        announce(run, format_report(prepared.report), format_plan(run, tokenizer.name_or_path))
        for warning in guards.label_coverage(prepared.report):
            print(f"warning: {warning}", flush=True)
    return run


def announce(run: Run, report: str, plan: str) -> None:
    """Write data_report.json; print the changed settings, the `report`, the `plan` and the resume point."""
    write_atomic(run.folder / "data_report.json", json.dumps(run.prepared.report, indent=2))
    settings = ", ".join(f"{k}={v}" for k, v in changed(run.cfg).items())
    print(f"config: {run.folder / 'config.yaml'} (set: {settings or 'all defaults'})")
    print(report)
    print(plan, flush=True)
    if run.resume:
        print(f"resuming from {Path(run.resume).name} (step {checkpoint_step(run.resume)} of {run.steps})", flush=True)


@contextmanager
def signals_stop(stop, announce: bool = True) -> Iterator[None]:
    """SIGTERM and Ctrl-C ask `stop` to end after this step with a checkpoint; a second Ctrl-C stops at once."""

    def handle(signum, frame):
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.request(signum)
        if announce:
            name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            print(f"\n{name}: stopping after this step and saving a checkpoint (Ctrl-C again stops at once, "
                  "without one).", flush=True)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def tracking(run: Run) -> Iterator[object]:
    """The wandb run (main process, unless disabled), finished when the block ends; yields it or None."""
    cfg = run.cfg
    if cfg.tracking.wandb == "disabled" or not run.main:
        yield None
        return
    import wandb

    sys.argv[:] = redact_argv(sys.argv)  # wandb records the command line with the run, and uploads it
    if cfg.tracking.api_key:
        os.environ["WANDB_API_KEY"] = cfg.tracking.api_key  # read by wandb; never printed or written by the kit
    handle = wandb.init(project=cfg.tracking.project, entity=cfg.tracking.entity or None, name=run.folder.name,
                        tags=cfg.tracking.tags or None, group=cfg.tracking.group or None, config=to_dict(cfg),
                        dir=str(run.folder), mode=cfg.tracking.wandb, id=run.folder.name.replace("/", "-"),
                        resume="allow")
    handle.summary["data_report"] = run.prepared.report
    try:
        yield handle
    finally:
        handle.finish()


def build(run: Run, callbacks: list | None = None, progress: bool = True):
    """The model with its adapter and the trainer around it; returns (trainer, its stop request)."""
    from transformers import set_seed

    set_seed(run.cfg.train.seed)
    model, tokenizer = load_for_training(run.cfg, run.backend)
    guards.same_template(load_tokenizer(run.cfg), tokenizer, "the tokenizer the model loaded with")
    guards.pad_token(model, tokenizer)
    stop, t = stop_request(), run.cfg.train
    prepared = run.prepared
    switch = switch_check(run.cfg, run.backend) if t.switch_tokens else None
    trainer = build_trainer(run.cfg, model, tokenizer, prepared.train.remove_columns("source"),
                            by_source(prepared.eval) if prepared.eval is not None else None,
                            run.folder, epochs=run.epochs, progress=progress, eval_on_start=not run.resume,
                            callbacks=[metrics_log(run.folder), stop, guards.finite_loss(), *(callbacks or [])],
                            switch=switch)
    if t.packing:
        guards.packing(trainer)
    return trainer, stop


def save_adapter(run: Run, trainer) -> None:
    """`<run>/adapter` in one rename, by the main process: a run is complete exactly when it exists."""
    if run.main:
        with atomic_folder(run.folder / "adapter") as tmp:
            trainer.save_model(str(tmp))
            trainer.processing_class.save_pretrained(str(tmp))


def fit(run: Run, callbacks: list | None = None, progress: bool = True) -> TrainResult:
    """Build the model and trainer, then `run_trainer`."""
    trainer, stop = build(run, callbacks, progress)
    return run_trainer(run, trainer, stop)


def run_trainer(run: Run, trainer, stop) -> TrainResult:
    """Train to the end or until `stop`; the signal handlers stay until the adapter is in place, so no save is cut."""
    if run.main:  # the steps after the checkpoint (all of them without one) are trained again: their records go
        keep_metrics_until(run.folder, checkpoint_step(run.resume) if run.resume else -1)
    with tracking(run) as handle, signals_stop(stop, announce=run.main):
        output = trainer.train(resume_from_checkpoint=run.resume)
        if not stop.requested:
            save_adapter(run, trainer)
        tracked = (handle.url or str(Path(handle.dir).parent)) if handle else ""
    result = run.result(trainer.state.log_history, trainer.state.global_step, stop.requested, dict(output.metrics))
    result.wandb, result.signal = tracked, stop.signal
    return result


def already_trained(run: Run) -> TrainResult | None:
    """The result without training where none is needed: complete, or killed during its final save."""
    done = checkpoint_step(run.resume) if run.resume else 0
    if not run.resume or done < run.steps:
        return None
    history = json.loads((Path(run.resume) / "trainer_state.json").read_text())["log_history"]
    if run.main and has_adapter(run.folder) and not adapter_problem(run.folder / "adapter"):
        print(f"{run.folder} is already complete ({done} steps); name a new run (train.run_name, or grpo.run_name "
              "for GRPO), or set train.resume=never to train this one again from the start.")
    elif run.main:
        adapter_from_checkpoint(Path(run.resume), run.folder)
        print(f"finished from {Path(run.resume).name}: its adapter is now {run.folder / 'adapter'}; nothing to train.")
    return run.result(history, done, interrupted=False)


def train(cfg: Config, *, progress: bool = True, callbacks: list | None = None) -> TrainResult:
    """Prepare data, load the model with a LoRA adapter, train, and save the adapter into the run folder. `callbacks`
    are extra TrainerCallbacks. Under torchrun or accelerate the same call trains data-parallel (rank 0 prepares
    first)."""
    backend = activate_backend(cfg.train.backend, cfg.model.name)  # unsloth before transformers/trl/peft
    import torch
    from accelerate import PartialState

    # On CPU accelerate forms the (gloo) process group only when told it is a CPU run, as the Trainer will tell it.
    state = PartialState(cpu=not torch.cuda.is_available())
    folder = run_folder(cfg, state)
    with run_lock(folder) if state.is_main_process else nullcontext(), writing_into(folder):
        run = prepare_run(cfg, backend, state, folder, progress)
        finished = already_trained(run)
        run.state.wait_for_everyone()
        return finished or fit(run, callbacks, progress)
