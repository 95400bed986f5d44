"""Run by tests/test_unsloth_cpu.py in a fresh process: the unsloth backend's training path, as far as a CPU goes.

    UNSLOTH_ALLOW_CPU=1 python tests/unsloth_cpu_probe.py <tiny model folder>     # prints one JSON line

Unsloth is imported first, as `kit.training.backends.activate_backend("unsloth")` does on a GPU, and its TRL trainers
are generated (Unsloth skips that under UNSLOTH_ALLOW_CPU, so the probe asks for it). The model cannot come from
`FastLanguageModel.from_pretrained` here (it reads CUDA device properties), so the tiny model gets a peft LoRA and,
for GRPO, the for_training/for_inference switches from_pretrained attaches; everything after that is the kit's own
`build_trainer` / `build_grpo_trainer`, which then build Unsloth's SFTTrainer and GRPOTrainer. The generated GRPO
module reads the GPU's compute capability when it is imported (to pick compile options): here it is told 8.0, an
A100's, and UNSLOTH_COMPILE_DISABLE=1 keeps its loss functions eager on the CPU.
"""

import inspect
import json
import os
import sys
from pathlib import Path

from kit.training.backends import import_unsloth

import_unsloth()
import torch  # noqa: E402

torch.cuda.get_device_capability = lambda device=None: (8, 0)  # no GPU to ask; see the docstring
from trl.trainer.sft_config import SFTConfig as PristineSFTConfig  # noqa: E402
from unsloth.models.rl import patch_trl_rl_trainers  # noqa: E402

patch_trl_rl_trainers()
import trl  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from unsloth import FastLanguageModel  # noqa: E402

from kit.config import load_config  # noqa: E402
from kit.data import prepare_data  # noqa: E402
from kit.data.prompts import grpo_prompts  # noqa: E402
from kit.training.backends import load_tokenizer  # noqa: E402
from kit.training.grpo_trainer import build_grpo_trainer  # noqa: E402
from kit.training.trainer import build_trainer  # noqa: E402


def segments(batch) -> list[tuple[list[int], list[int]]]:
    """The rows of a collated batch: padded rows cut at their mask, a padding-free row where positions restart."""
    ids, labels = batch["input_ids"], batch["labels"]
    if "attention_mask" not in batch:
        positions = batch["position_ids"][0].tolist()
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(positions)]
        return [(ids[0, s:e].tolist(), labels[0, s:e].tolist()) for s, e in zip(starts, starts[1:], strict=False)]
    mask = batch["attention_mask"].bool()
    return [(ids[i][mask[i]].tolist(), labels[i][mask[i]].tolist()) for i in range(len(ids))]


def check_batches(packing: bool, model_dir: str, out: Path) -> dict:
    cfg = load_config("configs/smoke.yaml", [f"model.name={model_dir}", f"train.packing={packing}"])
    tokenizer = load_tokenizer(cfg)
    prepared = prepare_data(cfg, tokenizer, progress=False)
    expected = {tuple(row["input_ids"]): row["labels"] for row in prepared.train}
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=8, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    trainer = build_trainer(cfg, model, tokenizer, prepared.train.remove_columns("source"), None, out, progress=False)
    rows = [row for batch in trainer.get_train_dataloader() for row in segments(batch)]
    return {"trainer": [c.__name__ for c in type(trainer).__mro__],
            "unsloth_config": type(trainer.args) is trl.SFTConfig is not PristineSFTConfig,
            "rows": len(rows), "expected_rows": len(prepared.train),
            "labels_unchanged": sum(expected.get(tuple(ids)) == labels for ids, labels in rows)}


def switchable_model(model_dir: str, max_seq_length: int = 0):
    """The tiny model with a LoRA and the for_training/for_inference switches FastLanguageModel.from_pretrained
    attaches (and, given, the max_seq_length it stores on the model and its inner modules)."""
    import functools

    from unsloth.models.llama import FastLlamaModel

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir),
                           LoraConfig(r=8, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    for m in (model, model.base_model.model):
        m.for_training = functools.partial(FastLlamaModel.for_training, m)
        m.for_inference = functools.partial(FastLlamaModel.for_inference, m)
    if max_seq_length:
        for m in (model, model.base_model, model.base_model.model, model.base_model.model.model):
            m.max_seq_length = max_seq_length
    return model


def check_probe_steps(model_dir: str) -> dict:
    """Two of `qwen3-kit probe`'s training steps through Unsloth's SFTTrainer at length 128, on a model loaded with
    64 (Unsloth's trainer cuts its max_length to the model's, its forward the input_ids): the outcome, and the mode
    the model trained in (Unsloth's train() switches it; get_peft_model records the checkpointing asked for)."""
    from kit.training.probe import _full_rows, _steps

    cfg = load_config("configs/smoke.yaml", [f"model.name={model_dir}", "train.gradient_checkpointing=true"])
    tokenizer = load_tokenizer(cfg)
    model = switchable_model(model_dir, max_seq_length=64)
    model._unsloth_gradient_checkpointing = True  # get_peft_model's "unsloth" offloads to a GPU; plain here
    found = _steps(cfg, "unsloth", model, tokenizer, _full_rows(tokenizer, 4, 128), 2, 128, 2, 1)
    return {**found, "max_seq_length": model.base_model.model.model.max_seq_length}


def check_grpo(model_dir: str, out: Path) -> dict:
    """One GRPO update of the kit's trainer through Unsloth's own compute_loss; the calls it made to the kit's
    log-probability helper (positional arguments, and the seventh, Unsloth's compute_efficient) and the loss."""
    cfg = load_config("configs/smoke.yaml", [f"model.name={model_dir}", "grpo.start_from=base", "grpo.max_steps=1",
                                             "grpo.num_generations=2", "grpo.prompts_per_step=1",
                                             "grpo.per_device_train_batch_size=2", "grpo.max_completion_length=8"])
    tokenizer = load_tokenizer(cfg)
    model = switchable_model(model_dir)
    trainer = build_grpo_trainer(cfg, model, tokenizer, grpo_prompts(cfg, tokenizer).train, out, progress=False)
    calls, helper = [], type(trainer)._get_per_token_logps_and_entropies

    def recorded(self, *args, **kwargs):  # the kit's helper itself runs; the call is written down
        calls.append([len(args), args[6] if len(args) > 6 else None])
        return helper(self, *args, **kwargs)

    type(trainer)._get_per_token_logps_and_entropies = recorded
    trainer.train()
    return {"trainer": [c.__name__ for c in type(trainer).__mro__],
            "compute_loss": type(trainer).compute_loss.__qualname__, "calls": calls,
            "loss": next(h["loss"] for h in trainer.state.log_history if "loss" in h)}


def main() -> None:
    model_dir, out = sys.argv[1], Path(sys.argv[2])
    signature = {name: list(inspect.signature(getattr(FastLanguageModel, name)).parameters)
                 for name in ("from_pretrained", "get_peft_model", "patch_peft_model")}
    result = {"signature": signature, "statistics": os.environ.get("UNSLOTH_DISABLE_STATISTICS"),
              "padded": check_batches(False, model_dir, out / "padded"),
              "packed": check_batches(True, model_dir, out / "packed"), "grpo": check_grpo(model_dir, out / "grpo"),
              "probe_steps": check_probe_steps(model_dir)}
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
