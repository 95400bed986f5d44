"""The SFTTrainer the kit trains with, on data already tokenized and labelled, and the callbacks it always has.

    trainer = build_trainer(cfg, model, tokenizer, prepared.train, prepared.eval, run_folder)

Built after `kit.training.backends.activate_backend`, so on a GPU `trl.SFTTrainer` and `trl.SFTConfig` are Unsloth's
patched classes; tests/test_unsloth_cpu.py proves they keep the kit's labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.config import Config


def optimizer_name(cfg: Config, on_gpu: bool) -> str:
    """`train.optim`, with auto resolved: 8-bit AdamW where bitsandbytes has a GPU (less memory), torch's on a CPU."""
    if cfg.train.optim != "auto":
        return cfg.train.optim
    return "adamw_8bit" if on_gpu else "adamw_torch"


def whole_run_train_loss(state, logs: dict) -> None:
    """The final `train_loss` as the mean over the whole run (transformers' is too low after a resume)."""
    losses = [h["loss"] for h in state.log_history if "loss" in h]
    if "train_loss" in logs and losses:
        logs["train_loss"] = sum(losses) / len(losses)


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

        switch_check = None  # `switch_check(...)`'s function, run at each evaluation when set

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            """Per source (a dict of eval sets), then `eval_loss`, their mean over the rows, logged after them with
            the thinking switch's scores (`switch_check`): one record, so every log shows them together."""
            metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            sets = self.eval_dataset if eval_dataset is None else eval_dataset
            if isinstance(sets, dict) and f"{metric_key_prefix}_loss" not in metrics:
                rows = {name: len(rows) for name, rows in sets.items()}
                loss = sum(metrics[f"{metric_key_prefix}_{name}_loss"] * n for name, n in rows.items())
                switch = self.switch_check(self.model, self.processing_class) if self.switch_check else {}
                record = {f"{metric_key_prefix}_loss": loss / sum(rows.values()),
                          **{f"{metric_key_prefix}_{k}": v for k, v in switch.items()}}
                metrics.update(record)
                self.log(record)
            return metrics

        def log(self, logs, start_time=None):
            whole_run_train_loss(self.state, logs)
            super().log(logs, start_time)

    return KitSFTTrainer


def run_arguments(cfg: Config, out: Path, save_steps: int, warmup_steps: int) -> dict:
    """The TrainingArguments every trainer of the kit shares; each adds its own steps, batch and learning rate."""
    import torch

    on_gpu = torch.cuda.is_available()
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    t = cfg.train
    return dict(
        output_dir=str(out / "checkpoints"),
        lr_scheduler_type=t.lr_scheduler_type, warmup_steps=warmup_steps,
        weight_decay=t.weight_decay, optim=optimizer_name(cfg, on_gpu), bf16=bf16, fp16=on_gpu and not bf16,
        logging_steps=t.logging_steps,
        save_strategy="steps", save_steps=save_steps, save_total_limit=t.save_total_limit,
        seed=t.seed, data_seed=t.seed,
        gradient_checkpointing=False,  # enabled by the backend itself (Unsloth's offloaded variant, or peft's)
        report_to=["wandb"] if cfg.tracking.wandb != "disabled" else [],
        # the kit's own progress bar (progress below) replaces tqdm's
        run_name=out.name, disable_tqdm=True, dataloader_num_workers=0, use_cpu=not on_gpu,
        logging_nan_inf_filter=False,  # a NaN loss logged as NaN, for kit.training.guards.finite_loss to stop on
    )


def sft_config(cfg: Config, out: Path, *, epochs: int = 1, has_eval: bool = True, eval_on_start: bool = False):
    """The `SFTConfig` from the kit's config; `eval_on_start`: the step-0 reference the eval curves start from."""
    from trl import SFTConfig

    t = cfg.train
    return SFTConfig(
        **run_arguments(cfg, out, t.save_steps, t.warmup_steps),
        max_steps=t.max_steps or -1,
        num_train_epochs=t.num_train_epochs / epochs,  # with redrawn chat, one pass covers all epoch mixes
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        eval_strategy="steps" if has_eval else "no", eval_steps=(t.eval_steps or t.save_steps) if has_eval else None,
        eval_on_start=has_eval and eval_on_start,
        max_length=cfg.model.max_seq_length,
        packing=t.packing, padding_free=t.packing,
        dataset_kwargs={"skip_prepare_dataset": not t.packing},  # the kit already tokenized and labelled
        ddp_find_unused_parameters=False,  # LoRA leaves most parameters frozen on purpose
    )


def build_trainer(cfg: Config, model, tokenizer, train_dataset, eval_dataset, out: Path, *, epochs: int = 1,
                  progress: bool = True, callbacks: list | None = None, eval_on_start: bool = False, switch=None):
    """The SFTTrainer on data already tokenized and labelled; `eval_dataset` may be a dict of named sets
    (`by_source`), and `switch` (`switch_check`'s function) scores the thinking switch at each evaluation."""
    from transformers import PrinterCallback

    has_eval = eval_dataset is not None and len(eval_dataset) > 0
    args = sft_config(cfg, out, epochs=epochs, has_eval=has_eval, eval_on_start=eval_on_start)
    trainer = _trainer_class()(model=model, args=args, processing_class=tokenizer, train_dataset=train_dataset,
                               eval_dataset=eval_dataset if has_eval else None,
                               callbacks=[*progress_display(progress), time_left(), *(callbacks or []),
                                          *([switch_watch(cfg.train.switch_drop)] if switch else [])])
    trainer.remove_callback(PrinterCallback)  # its dict dumps, in place of the display above
    trainer.switch_check = switch
    return trainer


SWITCH_PROMPTS = ["What is 12 + 30?", "Name the capital of France.", "用一句话介绍长城。", "Say thank you in Spanish."]


def switch_check(cfg: Config, backend: str):
    """`fn(model, tokenizer) -> {"switch", "switch_thinking_on", "switch_thinking_off"}`: SWITCH_PROMPTS generated
    thinking on and off with Qwen's presets, judged as Qwen's ThinkFollow; training's random state is left as it was."""
    from kit.evaluation.scores import local_generator, switch_shares

    conversations = [[{"role": "user", "content": p}] for p in SWITCH_PROMPTS]

    def check(model, tokenizer) -> dict:
        generate = local_generator(model, tokenizer, max_new_tokens=cfg.train.switch_tokens,
                                   batch_size=len(conversations))
        with random_state_kept(), generating(backend, cfg, model, tokenizer):
            shares = switch_shares(generate(conversations, True), generate(conversations, False))
        return {"switch": (shares["switch_thinking_on"] + shares["switch_thinking_off"]) / 2, **shares}

    return check


@contextmanager
def random_state_kept() -> Iterator[None]:
    """Python's, numpy's and torch's random states restored after the block: training draws the same either way."""
    import random

    import numpy as np
    import torch

    kept = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():
        try:
            yield
        finally:
            random.setstate(kept[0])
            np.random.set_state(kept[1])


@contextmanager
def generating(backend: str, cfg: Config, model, tokenizer) -> Iterator[None]:
    """The model being trained ready to generate (Unsloth's inference switch, or eval mode), then back to training."""
    side = tokenizer.padding_side
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    model.eval()
    try:
        yield
    finally:
        tokenizer.padding_side = side  # generation pads on the left; the tokenizer is saved with the adapter
        if backend == "unsloth":
            from kit.training.backends import unsloth_patch_kwargs

            FastLanguageModel.for_training(model, **unsloth_patch_kwargs(cfg))
        model.train()


def by_source(dataset) -> dict:
    """The eval rows split by their `source` column, without it, keyed as their metrics are (`eval_<key>_loss`)."""
    from kit.training.metrics import source_key

    names = dataset["source"]
    return {source_key(name): dataset.select([i for i, n in enumerate(names) if n == name], keep_in_memory=True)
            .remove_columns("source") for name in dict.fromkeys(names)}


def progress_display(bar: bool = True) -> list:
    """The training display in place of transformers' dict dumps: a bar (none without `bar`), a line per evaluation."""
    return [_training_bar(bar), _evaluation_lines(bar)]


def _training_bar(bar: bool):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TrainingBar(TrainerCallback):
        def __init__(self):
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if bar and state.is_world_process_zero:
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="training", unit="step",
                                dynamic_ncols=True)

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and "loss" in (logs or {}):
                reward = f", reward {logs['reward']:.3f}" if "reward" in logs else ""  # GRPO's
                self.bar.set_postfix_str(f"loss {logs['loss']:.4f}{reward}, lr {logs.get('learning_rate', 0):.2e}")

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return TrainingBar()


def _evaluation_lines(bar: bool):
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    from kit.training.metrics import source_losses

    class EvaluationLines(TrainerCallback):
        def __init__(self):
            self.bar = None
            self.sources = {}  # this evaluation's loss per source, printed with its mean

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            if bar and state.is_world_process_zero and eval_dataloader is not None:
                if self.bar is None:
                    self.bar = tqdm(total=len(eval_dataloader), desc="evaluating", unit="batch", leave=False,
                                    dynamic_ncols=True)
                self.bar.update(1)

        def on_evaluate(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.sources.update(source_losses(logs or {}))
            if state.is_world_process_zero and "eval_loss" in (logs or {}):
                self.on_evaluate(args, state, control)  # the evaluation is over; its bar goes before the line
                tqdm.write(_eval_line(state, logs, self.sources))
                self.sources = {}

    return EvaluationLines()


def _eval_line(state, logs: dict, sources: dict[str, float]) -> str:
    """`step 25/100: eval loss 5.9469 (reasoning 5.8638, chat 6.1920), thinking switch 1.00`."""
    from kit.training.metrics import SWITCH

    each = ", ".join(f"{name} {loss:.4f}" for name, loss in sources.items())
    line = f"step {state.global_step}/{state.max_steps}: eval loss {logs['eval_loss']:.4f}"
    line = f"{line} ({each})" if len(sources) > 1 else line
    return line + (f", thinking switch {logs[SWITCH]:.2f}" if SWITCH in logs else "")


def switch_watch(drop: float):
    """A callback warning while the switch's score lies over `drop` below step 0's: the run teaches it to ignore
    thinking."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    from kit.training.metrics import SWITCH, broken_switch

    class SwitchWatch(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and SWITCH in (logs or {}) and (why := broken_switch(state.log_history,
                                                                                              drop)):
                tqdm.write(f"warning: {why}. More chat rows (data.chat_ratio) or a lower learning rate keep it; "
                           "export refuses this run unless export.allow_broken_switch=true.")

    return SwitchWatch()


def time_left(after: int = 3):
    """A callback printing once, `after` steps past the first (warm-up), how long the rest should take."""
    import time

    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class TimeLeft(TrainerCallback):
        start: tuple[int, float] | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            if self.start is None:
                self.start = (state.global_step, time.monotonic())
                return
            timed, remaining = state.global_step - self.start[0], state.max_steps - state.global_step
            if timed == after and remaining > 0:
                per_step = (time.monotonic() - self.start[1]) / timed
                finish = time.strftime("%H:%M", time.localtime(time.time() + per_step * remaining))
                tqdm.write(f"time: {per_step:.2f} s/step, so about {duration(per_step * remaining)} for the remaining "
                           f"{remaining} steps, done around {finish} (evaluations and checkpoints add to it)")

    return TimeLeft()


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def metrics_log(run: Path):
    """A callback appending every logged metric to `<run>/logs/metrics.jsonl`, for plots and after a crash."""
    from transformers import TrainerCallback

    from kit.files import append_line

    class MetricsLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                append_line(run / "logs" / "metrics.jsonl", {"step": state.global_step, **logs})

    return MetricsLog()


def stop_request():
    """A callback that, once `request()`ed, saves a checkpoint after the current step and stops training."""
    from transformers import TrainerCallback

    class StopRequest(TrainerCallback):
        def __init__(self):
            self.requested = False
            self.signal = 0  # the signal that asked, for the exit status (128 + signal)

        def request(self, signum: int = 15):
            self.requested, self.signal = True, signum

        def on_step_end(self, args, state, control, **kwargs):
            if self.requested:
                control.should_save = True
                control.should_training_stop = True

    return StopRequest()
