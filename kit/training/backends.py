"""The training backends, chosen in one place, and model/tokenizer loading: `unsloth` (a CUDA GPU, 4-bit, fused
kernels), `hf` (transformers + peft: the CPU path and the speed baseline), `auto` (unsloth where a GPU is).

Unsloth patches transformers, trl and peft when imported, so `activate_backend` imports it first, deliberately.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from kit.config import Config
from kit.errors import KitError
from kit.machine import no_gpu_reason

PATCHED_BY_UNSLOTH = ("transformers", "trl", "peft")


class BackendError(KitError, RuntimeError):
    pass


TRAINING = ("train.backend=unsloth", "train.backend=hf to train")  # what asks for unsloth, and what to use instead


def pick_backend(name: str, model: str = "", asked: tuple[str, str] = TRAINING) -> str:
    """'auto' -> 'unsloth' with a CUDA GPU, else 'hf'. Without a usable GPU unsloth is an error (`asked`: what asked
    for it, and what to use instead), and so is auto for a real `model`: its weights would be downloaded for a CPU
    run that cannot finish."""
    import torch

    if torch.cuda.is_available():
        return "unsloth" if name == "auto" else name
    if name == "unsloth":
        raise BackendError(f"{asked[0]} needs a CUDA GPU and none is usable: {no_gpu_reason()}; use {asked[1]} on "
                           "this machine.")
    if name == "auto" and model not in ("", "tiny"):
        raise BackendError(f"{model} needs a CUDA GPU and none is usable: {no_gpu_reason()}. Nothing was downloaded; "
                           "set train.backend=hf to use the CPU anyway (fp32, far too slow for a real model).")
    return "hf"


def activate_backend(name: str, model: str = "", asked: tuple[str, str] = TRAINING) -> str:
    """Resolve the backend (see pick_backend) and, for unsloth, import it now, before transformers/trl/peft."""
    backend = pick_backend(name, model, asked)
    if backend == "unsloth" and "unsloth" not in sys.modules:
        early = [m for m in PATCHED_BY_UNSLOTH if m in sys.modules]
        if early:
            warnings.warn(f"{', '.join(early)} was imported before unsloth, so Unsloth's patches may be incomplete; "
                          "in a notebook, restart the kernel and run the kit's cells first.", stacklevel=2)
        import_unsloth()
    return backend


def import_unsloth() -> None:
    """Import unsloth for its patches. Its usage-statistics request to huggingface.co is switched off unless the
    user chose otherwise: where that host is blocked (mainland China) each model load would stall up to 120 s."""
    os.environ.setdefault("UNSLOTH_DISABLE_STATISTICS", "1")
    import unsloth  # noqa: F401


def environment() -> dict:
    """What this machine offers for training: Python, torch, CUDA, the GPU and its memory, library versions."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "gpu": None, "gpu_memory_gb": None, "bf16": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 1e9, 1),
                    bf16=torch.cuda.is_bf16_supported())
    for package in ("unsloth", "unsloth_zoo", "transformers", "trl", "peft", "bitsandbytes", "datasets", "modelscope"):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    info["backend"] = "unsloth" if info["gpu"] else "hf"
    return info


def load_tokenizer(cfg: Config):
    """The model's own tokenizer (its chat template defines the training format)."""
    from transformers import AutoTokenizer

    from kit.hub import resolve_model

    folder = resolve_model(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not tokenizer.is_fast:
        raise BackendError(f"{folder}: the kit needs a fast tokenizer (tokenizer.json) to label assistant turns.")
    check_thinking_switch(folder)
    return tokenizer


def check_thinking_switch(folder: Path) -> None:
    """Refuse, before it loads, a model whose chat template lacks Qwen3's thinking switch (e.g. a Qwen3-2507 copy)."""
    template = " ".join(p.read_text(encoding="utf-8", errors="replace") for p in
                        (Path(folder) / "tokenizer_config.json", Path(folder) / "chat_template.jinja") if p.is_file())
    if "enable_thinking" not in template:
        raise BackendError(f"{folder}: its chat template has no enable_thinking switch (Qwen3-2507 Instruct and "
                           "Thinking and non-Qwen3 models lack it), which the kit trains and checks; train a hybrid "
                           "Qwen3 (0.6B to 32B).")


def linear_modules(model) -> list[str]:
    """Names (last path part) of the model's linear layers, MoE routers included: what LoRA can target."""
    import torch

    names = set()
    for name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, torch.nn.Linear) or kind in ("Linear4bit", "Linear8bitLt") or name.endswith("mlp.gate"):
            names.add(name.rsplit(".", 1)[-1])
    names.discard("lm_head")
    return sorted(names)


def check_targets(model, targets: list[str]) -> None:
    available = linear_modules(model)
    missing = [t for t in targets if t not in available]
    if missing:
        raise BackendError(f"lora.target_modules has {missing}, which this model does not have; "
                           f"its linear layers are {available}.")


def check_adapter(cfg: Config) -> None:
    """Continuing an adapter needs the same rank, alpha and targets: name both values where they differ."""
    from peft import PeftConfig

    from kit.training.runs import verify_adapter

    if not (Path(cfg.model.adapter) / "adapter_config.json").is_file():
        raise BackendError(f"model.adapter '{cfg.model.adapter}' has no adapter_config.json.")
    verify_adapter(Path(cfg.model.adapter))
    saved = PeftConfig.from_pretrained(cfg.model.adapter)
    pairs = [("r", saved.r, cfg.lora.r), ("alpha", saved.lora_alpha, cfg.lora.lora_alpha),
             ("target_modules", sorted(saved.target_modules or []), sorted(cfg.lora.target_modules))]
    problems = [f"the adapter has {key}={old} but lora.{key} is {new}" for key, old, new in pairs if old != new]
    if problems:
        raise BackendError(f"model.adapter '{cfg.model.adapter}' does not match the config: {'; '.join(problems)}. "
                           "Set lora.* to the adapter's values to continue it.")


def unsloth_load_kwargs(cfg: Config, folder: Path, vllm: bool = False) -> dict:
    kwargs = dict(model_name=str(folder), max_seq_length=cfg.model.max_seq_length, dtype=None,
                  load_in_4bit=cfg.model.load_in_4bit, full_finetuning=False, token=cfg.model.token or None)
    if vllm:  # Unsloth's fast_inference: a vLLM engine on the same weights generates GRPO's completions
        kwargs.update(fast_inference=True, max_lora_rank=cfg.lora.r, gpu_memory_utilization=cfg.grpo.vllm_memory)
    return kwargs


def unsloth_peft_kwargs(cfg: Config) -> dict:
    return dict(r=cfg.lora.r, target_modules=cfg.lora.target_modules, lora_alpha=cfg.lora.lora_alpha,
                lora_dropout=cfg.lora.lora_dropout, bias="none",
                use_gradient_checkpointing="unsloth" if cfg.train.gradient_checkpointing else False,
                random_state=cfg.train.seed, use_rslora=cfg.lora.use_rslora, loftq_config=None)


def unsloth_patch_kwargs(cfg: Config) -> dict:
    return dict(use_gradient_checkpointing=unsloth_peft_kwargs(cfg)["use_gradient_checkpointing"])


def _load_unsloth(cfg: Config, folder: Path, vllm: bool = False):
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(**unsloth_load_kwargs(cfg, folder, vllm))
    check_targets(model, cfg.lora.target_modules)
    if not cfg.model.adapter:
        return FastLanguageModel.get_peft_model(model, **unsloth_peft_kwargs(cfg)), tokenizer
    from peft import PeftModel

    # A plain PeftModel skips what get_peft_model installs: Unsloth's checkpointing and its fused LoRA kernels.
    model = PeftModel.from_pretrained(model, cfg.model.adapter, is_trainable=True)
    return FastLanguageModel.patch_peft_model(model, **unsloth_patch_kwargs(cfg)), tokenizer


def compute_dtype(on_gpu: bool):
    """bf16 where the GPU has it, else fp16; fp32 on a CPU. Unsloth's `dtype=None` chooses the same way."""
    import torch

    if not on_gpu:
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def quantized(cfg: Config, on_gpu: bool) -> bool:
    """4-bit base weights: asked for, and possible (bitsandbytes' 4-bit needs a GPU; a CPU trains in fp32)."""
    return on_gpu and cfg.model.load_in_4bit


def precision(cfg: Config, backend: str, on_gpu: bool) -> str:
    """How the base weights are held and computed, as the loaders below do it, in words for the plan."""
    dtype = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[str(compute_dtype(on_gpu)).split(".")[-1]]
    if not on_gpu:
        return "fp32 weights (no GPU: 4-bit needs one)" if cfg.model.load_in_4bit else "fp32 weights (no GPU)"
    if not quantized(cfg, on_gpu):
        return f"16-bit base ({dtype})"
    return f"{'Unsloth dynamic 4-bit' if backend == 'unsloth' else '4-bit nf4'} base, {dtype} compute"


def _device_map(on_gpu: bool) -> dict | None:
    """Each process's whole model on its own GPU; none where FSDP or DeepSpeed ZeRO-3 shard the model themselves."""
    from transformers.distributed.fsdp import is_fsdp_enabled
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    if not on_gpu or is_fsdp_enabled() or is_deepspeed_zero3_enabled():
        return None
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def _load_hf(cfg: Config, folder: Path):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    on_gpu = torch.cuda.is_available()
    dtype = compute_dtype(on_gpu)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype) if quantized(cfg, on_gpu) else None
    model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, dtype=dtype,
                                                 attn_implementation="sdpa", device_map=_device_map(on_gpu))
    # Not peft's prepare_model_for_kbit_training: it keeps fp32 copies of the embeddings, lm_head and norms
    # (2.5 GB each for 8B's embeddings and head), which bf16 training does not need (docs/benchmarks.md).
    if cfg.train.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    check_targets(model, cfg.lora.target_modules)
    if cfg.model.adapter:
        model = PeftModel.from_pretrained(model, cfg.model.adapter, is_trainable=True)
    else:
        model = get_peft_model(model, LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.lora_alpha, lora_dropout=cfg.lora.lora_dropout, bias="none",
            target_modules=cfg.lora.target_modules, use_rslora=cfg.lora.use_rslora, task_type="CAUSAL_LM"))
    return model, AutoTokenizer.from_pretrained(folder)


LOADERS = {"unsloth": _load_unsloth, "hf": _load_hf}


def load_for_training(cfg: Config, backend: str, *, vllm: bool = False):
    """The model with a trainable LoRA (new, or `model.adapter` continued) and its tokenizer; `vllm`: for GRPO."""
    from kit.hub import resolve_model

    if cfg.model.adapter:
        check_adapter(cfg)
    assert backend == "unsloth" or not vllm, "vLLM shares the weights through Unsloth's fast_inference"
    folder = resolve_model(cfg.model)
    check_thinking_switch(folder)
    return _load_unsloth(cfg, folder, vllm=True) if vllm else LOADERS[backend](cfg, folder)
