"""Train a LoRA adapter on the prepared mix with TRL's SFTTrainer, resumable after preemption.

    result = train(load_config("configs/smoke.yaml"))
    result.adapter_dir, result.losses

Three steps, each readable on its own: `prepare_run` (the run folder, the data, the plan, where to resume),
`fit` (model, trainer, signals, tracking) and `finish` (the adapter, the result). The run folder is described in
kit.runs. With `train.resume=auto` a rerun continues from the newest checkpoint; SIGTERM (a preempted rented GPU)
or Ctrl-C saves a checkpoint before the process exits.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kit.backends import activate_backend, load_for_training, load_tokenizer
from kit.config import Config, changed, save_config, to_dict
from kit.data import format_report, prepare_data
from kit.memory import estimate
from kit.qwen3 import find
from kit.runs import checkpoint_step, has_adapter, newest_checkpoint, run_folder
from kit.trainer import build_trainer, metrics_log, optimizer_name, stop_request


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


@dataclass
class Run:
    """What is decided before the model loads: the folder, the data, the length, and where training resumes."""

    cfg: Config
    backend: str
    folder: Path
    prepared: object  # kit.data.Prepared
    steps: int
    epochs: int  # the mixes prepared: one, or one per epoch with data.redraw_chat_each_epoch
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
    return max(1, math.ceil(math.ceil(rows / epochs / batch) * cfg.train.num_epochs))


def format_plan(run: Run, model_folder: Path) -> str:
    import torch

    cfg, mix = run.cfg, run.prepared.report["mix"]
    known = find(cfg.model.name)
    vram = (str(estimate(known.size, load_in_4bit=cfg.model.load_in_4bit, lora_r=cfg.lora.r,
                         seq_len=cfg.model.max_seq_length, batch=cfg.train.per_device_train_batch_size,
                         gradient_checkpointing=cfg.train.gradient_checkpointing, backend=run.backend))
            if known and known.trainable_4bit else "n/a (not a known dense Qwen3)")
    batch = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
    return "\n".join([
        "plan:",
        f"  model     {cfg.model.name} ({model_folder}), {'4-bit' if cfg.model.load_in_4bit else '16-bit'} base",
        f"  LoRA      r={cfg.lora.r} alpha={cfg.lora.alpha} on {', '.join(cfg.lora.target_modules)}",
        f"  backend   {run.backend}, optimizer {optimizer_name(cfg, torch.cuda.is_available())}",
        f"  VRAM      {vram}",
        f"  data      {mix['train_rows']} train rows ({mix['reasoning_rows']} reasoning, {mix['chat_rows']} chat), "
        f"{mix['eval_rows']} eval; chat {mix['chat_share_rows']:.1%} of rows, {mix['chat_share_tokens']:.1%} of tokens",
        f"  steps     {run.steps} x batch {batch} ({cfg.train.per_device_train_batch_size} x "
        f"{cfg.train.gradient_accumulation_steps} accumulation), lr {cfg.train.learning_rate:g}",
        f"  output    {run.folder}",
    ])


def prepare_run(cfg: Config, backend: str, progress: bool = True) -> Run:
    """The run folder (its config saved), the prepared data (rank 0 first; the others reuse its cache), the
    report and plan printed, and the checkpoint to resume from."""
    import torch
    from accelerate import PartialState

    # On CPU accelerate forms the (gloo) process group only when told it is a CPU run, as the Trainer will tell it.
    state = PartialState(cpu=not torch.cuda.is_available())
    folder = run_folder(cfg, state)
    if state.is_main_process:
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        save_config(cfg, folder / "config.yaml")
    epochs = max(1, math.ceil(cfg.train.num_epochs)) if cfg.data.redraw_chat_each_epoch else 1
    with state.main_process_first():
        tokenizer = load_tokenizer(cfg)
        prepared = prepare_data(cfg, tokenizer, epochs=epochs, progress=progress and state.is_main_process)
    resume = None
    if cfg.train.resume != "never":
        found = newest_checkpoint(folder) if cfg.train.resume == "auto" else Path(cfg.train.resume)
        resume = str(found) if found else None
    run = Run(cfg, backend, folder, prepared, total_steps(cfg, len(prepared.train), epochs), epochs, resume, state)
    if run.main:
        (folder / "data_report.json").write_text(json.dumps(prepared.report, indent=2))
        settings = ", ".join(f"{k}={v}" for k, v in changed(cfg).items())
        print(f"config: {folder / 'config.yaml'} (set: {settings or 'all defaults'})")
        print(format_report(prepared.report))
        print(format_plan(run, tokenizer.name_or_path), flush=True)
    return run


@contextmanager
def signals_stop(callback) -> Iterator[None]:
    """SIGTERM and Ctrl-C ask `callback` to stop after the current step, for the duration of the block."""
    previous = {s: signal.signal(s, callback.request) for s in (signal.SIGTERM, signal.SIGINT)}
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

    if cfg.tracking.api_key:
        os.environ["WANDB_API_KEY"] = cfg.tracking.api_key  # read by wandb; never printed or written by the kit
    handle = wandb.init(project=cfg.tracking.project, entity=cfg.tracking.entity or None, name=run.folder.name,
                        tags=cfg.tracking.tags or None, config=to_dict(cfg), dir=str(run.folder),
                        mode=cfg.tracking.wandb, id=run.folder.name.replace("/", "-"), resume="allow")
    handle.summary["data_report"] = run.prepared.report
    try:
        yield handle
    finally:
        handle.finish()


def fit(run: Run, callbacks: list | None = None, progress: bool = True):
    """Load the model with its adapter, build the trainer and train; returns (trainer, output, stop request,
    where wandb put the run)."""
    from transformers import set_seed

    set_seed(run.cfg.train.seed)
    model, tokenizer = load_for_training(run.cfg, run.backend)
    stop = stop_request()
    prepared = run.prepared
    trainer = build_trainer(run.cfg, model, tokenizer, prepared.train.remove_columns("source"),
                            prepared.eval.remove_columns("source") if prepared.eval is not None else None,
                            run.folder, epochs=run.epochs, progress=progress,
                            callbacks=[metrics_log(run.folder), stop, *(callbacks or [])])
    with tracking(run) as handle, signals_stop(stop):
        output = trainer.train(resume_from_checkpoint=run.resume)
        tracked = (handle.url or str(Path(handle.dir).parent)) if handle else ""
    return trainer, output, stop, tracked


def finish(run: Run, trainer, output, stopped: bool, tracked: str) -> TrainResult:
    """The adapter written into the run folder (unless stopped: then the newest checkpoint is the state), and the
    result."""
    if not stopped:
        trainer.save_model(str(run.folder / "adapter"))  # writes on the main process only
        if run.main:
            trainer.processing_class.save_pretrained(str(run.folder / "adapter"))
    result = run.result(trainer.state.log_history, trainer.state.global_step, stopped, dict(output.metrics))
    result.wandb = tracked
    return result


def train(cfg: Config, *, progress: bool = True, callbacks: list | None = None) -> TrainResult:
    """Prepare data, load the model with a LoRA adapter, train, and save the adapter into the run folder.

    `callbacks` are extra `transformers.TrainerCallback`s (e.g. `kit.plots.live_loss_plot()` in a notebook).
    Under `torchrun` or `accelerate launch` the same call trains data-parallel: rank 0 downloads, prepares the
    data and writes the run folder first; the other ranks wait and reuse its cache.
    """
    backend = activate_backend(cfg.train.backend)  # unsloth before transformers/trl/peft
    run = prepare_run(cfg, backend, progress)
    done = checkpoint_step(run.resume) if run.resume else 0
    if run.resume and done >= run.steps and has_adapter(run.folder):
        if run.main:
            print(f"{run.folder} is already complete ({done} steps); set train.run_name for a new run, or "
                  "train.resume=never to train this one again from the start.")
        history = json.loads((Path(run.resume) / "trainer_state.json").read_text())["log_history"]
        return run.result(history, done, interrupted=False)
    if cfg.train.resume == "never" and run.main:  # start over: stale checkpoints would be picked up by resume=auto
        for stale in ("checkpoints", "adapter"):
            shutil.rmtree(run.folder / stale, ignore_errors=True)
    run.state.wait_for_everyone()
    trainer, output, stop, tracked = fit(run, callbacks, progress)
    return finish(run, trainer, output, stop.requested, tracked)
