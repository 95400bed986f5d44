"""The SFTTrainer the kit trains with, on data already tokenized and labelled, and the callbacks it always has.

    trainer = build_trainer(cfg, model, tokenizer, prepared.train, prepared.eval, run_folder)

Built after `kit.backends.activate_backend`, so on a GPU `trl.SFTTrainer` and `trl.SFTConfig` are Unsloth's patched
classes; tests/test_unsloth_cpu.py proves they keep the kit's labels.
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.config import Config


def optimizer_name(cfg: Config, on_gpu: bool) -> str:
    """`train.optim`, with auto resolved: 8-bit AdamW where bitsandbytes has a GPU (less memory), torch's on a CPU."""
    if cfg.train.optim != "auto":
        return cfg.train.optim
    return "adamw_8bit" if on_gpu else "adamw_torch"


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


def sft_config(cfg: Config, out: Path, *, epochs: int = 1, has_eval: bool = True, progress: bool = True):
    """The `SFTConfig` of a run from the kit's config: the one mapping from our keys to TRL's."""
    import torch
    from trl import SFTConfig

    on_gpu = torch.cuda.is_available()
    bf16 = on_gpu and torch.cuda.is_bf16_supported()
    t = cfg.train
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        max_steps=t.max_steps or -1,
        num_train_epochs=t.num_epochs / epochs,  # with redrawn chat, one pass covers all epoch mixes
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_steps,
        weight_decay=t.weight_decay, optim=optimizer_name(cfg, on_gpu), bf16=bf16, fp16=on_gpu and not bf16,
        logging_steps=t.logging_steps,
        save_strategy="steps", save_steps=t.save_steps, save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_eval else "no", eval_steps=(t.eval_steps or t.save_steps) if has_eval else None,
        seed=t.seed, data_seed=t.seed,
        max_length=cfg.model.max_seq_length,
        packing=t.packing, padding_free=t.packing,
        dataset_kwargs={"skip_prepare_dataset": not t.packing},  # the kit already tokenized and labelled
        gradient_checkpointing=False,  # enabled by the backend itself (Unsloth's offloaded variant, or peft's)
        report_to=["wandb"] if cfg.tracking.wandb != "disabled" else [],
        run_name=out.name, disable_tqdm=not progress, dataloader_num_workers=0, use_cpu=not on_gpu,
        ddp_find_unused_parameters=False,  # LoRA leaves most parameters frozen on purpose
    )


def build_trainer(cfg: Config, model, tokenizer, train_dataset, eval_dataset, out: Path, *, epochs: int = 1,
                  progress: bool = True, callbacks: list | None = None):
    """The SFTTrainer the kit trains with, on datasets already tokenized and labelled (input_ids, labels)."""
    has_eval = eval_dataset is not None and len(eval_dataset) > 0
    args = sft_config(cfg, out, epochs=epochs, has_eval=has_eval, progress=progress)
    return _trainer_class()(model=model, args=args, processing_class=tokenizer, train_dataset=train_dataset,
                            eval_dataset=eval_dataset if has_eval else None, callbacks=callbacks or [])


def metrics_log(run: Path):
    """A callback writing every logged metric to `<run>/logs/metrics.jsonl`, one JSON line each, for plots and for
    reading after a crash."""
    from transformers import TrainerCallback

    class MetricsLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                with open(run / "logs" / "metrics.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    return MetricsLog()


def stop_request():
    """A callback that, once `request()`ed (by a signal handler), saves a checkpoint after the current step and
    stops training: how a preempted rented GPU keeps its work."""
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
