"""Train a LoRA adapter on the prepared mix with TRL's SFTTrainer, resumable after preemption.

    result = train(load_config("configs/smoke.yaml"))
    result.adapter_dir, result.losses

The run folder (`train.output_dir/train.run_name`) holds config.yaml (no secrets), data_report.json,
checkpoints/, adapter/ and logs/metrics.jsonl. With `train.resume=auto` a rerun continues from the newest
checkpoint; SIGTERM (a preempted rented GPU) or Ctrl-C saves a checkpoint before the process exits.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.backends import activate_backend, load_for_training, load_tokenizer
from kit.config import Config, save_config, to_dict
from kit.data import format_report, prepare_data
from kit.errors import KitError
from kit.memory import estimate
from kit.qwen3 import find


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


def run_dir(cfg: Config) -> Path:
    name = cfg.train.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    return Path(cfg.train.output_dir) / name


def newest_checkpoint(folder: Path) -> Path | None:
    """The highest-numbered complete `checkpoint-N` in a folder (one with trainer state), or None."""
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[-1]), default=None)


def _resume_from(cfg: Config, folder: Path) -> str | None:
    if cfg.train.resume == "never":
        return None
    if cfg.train.resume == "auto":
        found = newest_checkpoint(folder / "checkpoints")
        return str(found) if found else None
    if not Path(cfg.train.resume, "trainer_state.json").is_file():
        raise KitError(f"train.resume '{cfg.train.resume}' is not a checkpoint (no trainer_state.json).")
    return cfg.train.resume


def _history(checkpoint: Path) -> list[dict]:
    return json.loads((checkpoint / "trainer_state.json").read_text())["log_history"]


def _result(out: Path, backend: str, history: list[dict], steps: int, interrupted: bool,
            metrics: dict | None = None, main: bool = True) -> TrainResult:
    return TrainResult(
        run_dir=out, adapter_dir=out / "adapter", backend=backend, steps=steps, interrupted=interrupted,
        losses=[(h["step"], h["loss"]) for h in history if "loss" in h],
        eval_losses=[(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h],
        metrics=metrics or {}, main_process=main,
    )


def total_steps(cfg: Config, rows: int, epochs: int) -> int:
    if cfg.train.max_steps:
        return cfg.train.max_steps
    batch = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
    per_epoch = math.ceil(rows / epochs / batch)
    return max(1, math.ceil(per_epoch * cfg.train.num_epochs))


def format_plan(cfg: Config, backend: str, folder: Path, report: dict, steps: int, out: Path) -> str:
    known = find(cfg.model.name)
    vram = (str(estimate(known.size, load_in_4bit=cfg.model.load_in_4bit, lora_r=cfg.lora.r,
                         seq_len=cfg.model.max_seq_length, batch=cfg.train.per_device_train_batch_size,
                         gradient_checkpointing=cfg.train.gradient_checkpointing, backend=backend))
            if known and known.trainable_4bit else "n/a (not a known dense Qwen3)")
    mix = report["mix"]
    batch = cfg.train.per_device_train_batch_size * cfg.train.gradient_accumulation_steps
    return "\n".join([
        "plan:",
        f"  model     {cfg.model.name} ({folder}), {'4-bit' if cfg.model.load_in_4bit else '16-bit'} base, "
        f"LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} on {', '.join(cfg.lora.target_modules)}",
        f"  backend   {backend}",
        f"  VRAM      {vram}",
        f"  data      {mix['train_rows']} train rows ({mix['reasoning_rows']} reasoning, {mix['chat_rows']} chat), "
        f"{mix['eval_rows']} eval; chat {mix['chat_share_rows']:.1%} of rows, {mix['chat_share_tokens']:.1%} of tokens",
        f"  steps     {steps} x batch {batch} ({cfg.train.per_device_train_batch_size} x "
        f"{cfg.train.gradient_accumulation_steps} accumulation), lr {cfg.train.learning_rate:g}",
        f"  output    {out}",
    ])


def _callbacks(folder: Path):
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        """Every logged metric, one JSON line each, for plots and for reading after a crash."""

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(folder / "logs" / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    class Preemption(TrainerCallback):
        """On SIGTERM or Ctrl-C: finish the current step, save a checkpoint, stop."""

        def __init__(self):
            self.requested = False

        def request(self, signum, frame):
            self.requested = True

        def on_step_end(self, args, state, control, **kwargs):
            if self.requested:
                control.should_save = True
                control.should_training_stop = True

    return MetricsLog(), Preemption()


def _trainer_class():
    from transformers import Trainer
    from trl import SFTTrainer

    class KitSFTTrainer(SFTTrainer):
        """SFTTrainer; on CPU the loss is the model's own cross-entropy, since TRL's fused loss is a Triton
        (GPU-only) kernel in TRL 1.15. The labels, hence the objective, are the same."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if self.args.use_cpu:
                return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return KitSFTTrainer


def _init_wandb(cfg: Config, folder: Path, report: dict):
    if cfg.tracking.wandb == "disabled":
        return None
    import wandb

    if cfg.tracking.api_key:
        os.environ["WANDB_API_KEY"] = cfg.tracking.api_key  # read by wandb; never printed or written by the kit
    run = wandb.init(project=cfg.tracking.project, entity=cfg.tracking.entity or None, name=folder.name,
                     tags=cfg.tracking.tags or None, config=to_dict(cfg), dir=str(folder), mode=cfg.tracking.wandb,
                     id=folder.name.replace("/", "-"), resume="allow")
    run.summary["data_report"] = report
    return run


def build_trainer(cfg: Config, model, tokenizer, train_dataset, eval_dataset, out: Path, *, epochs: int = 1,
                  progress: bool = True, callbacks: list | None = None):
    """The SFTTrainer the kit trains with, on a dataset already tokenized and labelled (input_ids, labels)."""
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    has_eval = eval_dataset is not None and len(eval_dataset) > 0
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=cfg.train.max_steps or -1,
        num_train_epochs=cfg.train.num_epochs / epochs,  # with redrawn chat, one pass covers all epoch mixes
        per_device_train_batch_size=cfg.train.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.train.per_device_train_batch_size,
        gradient_accumulation_steps=cfg.train.gradient_accumulation_steps,
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.lr_scheduler_type,
        warmup_steps=cfg.train.warmup_steps,
        weight_decay=cfg.train.weight_decay,
        optim=cfg.train.optim if cfg.train.optim != "auto" else ("adamw_8bit" if on_gpu else "adamw_torch"),
        bf16=bf16, fp16=on_gpu and not bf16,
        logging_steps=cfg.train.logging_steps,
        save_strategy="steps", save_steps=cfg.train.save_steps, save_total_limit=cfg.train.save_total_limit,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=(cfg.train.eval_steps or cfg.train.save_steps) if has_eval else None,
        seed=cfg.train.seed, data_seed=cfg.train.seed,
        max_length=cfg.model.max_seq_length,
        packing=cfg.train.packing, padding_free=cfg.train.packing,
        dataset_kwargs={"skip_prepare_dataset": not cfg.train.packing},  # the kit already tokenized and labelled
        gradient_checkpointing=False,  # enabled by the backend itself (Unsloth's offloaded variant, or peft's)
        report_to=["wandb"] if cfg.tracking.wandb != "disabled" else [],
        run_name=out.name,
        disable_tqdm=not progress,
        dataloader_num_workers=0,
        use_cpu=not on_gpu,
        ddp_find_unused_parameters=False,  # LoRA leaves most parameters frozen on purpose
    )
    return _trainer_class()(model=model, args=args, processing_class=tokenizer, train_dataset=train_dataset,
                            eval_dataset=eval_dataset if has_eval else None, callbacks=callbacks or [])


def train(cfg: Config, *, progress: bool = True, callbacks: list | None = None) -> TrainResult:
    """Prepare data, load the model with a LoRA adapter, train, and save the adapter into the run folder.

    `callbacks` are extra `transformers.TrainerCallback`s (e.g. `kit.plots.live_loss_plot()` in a notebook).
    Under `torchrun` or `accelerate launch` the same call trains data-parallel: rank 0 downloads, prepares the
    data and writes the run folder first; the other ranks wait and reuse its cache.
    """
    backend = activate_backend(cfg.train.backend)  # unsloth before transformers/trl/peft
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    # One process, or this process's place under torchrun / accelerate launch; on CPU accelerate forms the (gloo)
    # process group only when told it is a CPU run, as the Trainer will tell it.
    state = PartialState(cpu=not torch.cuda.is_available())
    main = state.is_main_process
    out = run_dir(cfg)
    if main:
        (out / "logs").mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    epochs = max(1, math.ceil(cfg.train.num_epochs)) if cfg.data.redraw_chat_each_epoch else 1
    with state.main_process_first():  # rank 0 downloads and tokenizes; the others then find both cached
        tokenizer = load_tokenizer(cfg)
        prepared = prepare_data(cfg, tokenizer, epochs=epochs, progress=progress and main)
    steps = total_steps(cfg, len(prepared.train), epochs)
    if main:
        (out / "data_report.json").write_text(json.dumps(prepared.report, indent=2))
        print(format_report(prepared.report))
        print(format_plan(cfg, backend, Path(prepared.path), prepared.report, steps, out), flush=True)

    resume = _resume_from(cfg, out)
    done = int(Path(resume).name.split("-")[-1]) if resume else 0
    if resume and done >= steps and (out / "adapter" / "adapter_config.json").is_file():
        if main:
            print(f"{out} is already complete ({done} steps); set train.run_name for a new run, or "
                  "train.resume=never to train this one again from the start.")
        return _result(out, backend, _history(Path(resume)), done, interrupted=False, main=main)
    if cfg.train.resume == "never" and main:  # start over: stale checkpoints would be picked up by resume=auto
        for stale in ("checkpoints", "adapter"):
            shutil.rmtree(out / stale, ignore_errors=True)
    state.wait_for_everyone()

    set_seed(cfg.train.seed)
    model, tokenizer = load_for_training(cfg, backend)
    wandb_run = _init_wandb(cfg, out, prepared.report) if main else None
    metrics_log, preemption = _callbacks(out)
    trainer = build_trainer(cfg, model, tokenizer, prepared.train.remove_columns("source"),
                            prepared.eval.remove_columns("source") if prepared.eval is not None else None, out,
                            epochs=epochs, progress=progress, callbacks=[metrics_log, preemption, *(callbacks or [])])
    previous = {s: signal.signal(s, preemption.request) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        output = trainer.train(resume_from_checkpoint=resume)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if wandb_run is not None:
            tracked = wandb_run.url or str(Path(wandb_run.dir).parent)
            wandb_run.finish()
    adapter = out / "adapter"
    if not preemption.requested:  # an interrupted run's state is its newest checkpoint, not a final adapter
        trainer.save_model(str(adapter))  # writes on the main process only
        if main:
            tokenizer.save_pretrained(str(adapter))
    result = _result(out, backend, trainer.state.log_history, trainer.state.global_step, preemption.requested,
                     dict(output.metrics), main)
    result.wandb = tracked if wandb_run is not None else ""
    return result
