"""The two training backends, chosen in one place, and model/tokenizer loading.

- `unsloth` (CUDA GPU): `FastLanguageModel` in 4-bit with Unsloth's fused kernels and offloaded checkpointing.
- `hf` (CPU or GPU): transformers + peft, bitsandbytes nf4 on a GPU; the CPU path and the speed baseline.
- `auto`: unsloth where a CUDA GPU is present, else hf.

Unsloth patches transformers, trl and peft when it is imported, so it must be imported before them.
`activate_backend` is that one deliberate place: scripts call it right after reading the config.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

from kit.config import Config
from kit.errors import KitError

PATCHED_BY_UNSLOTH = ("transformers", "trl", "peft")


class BackendError(KitError, RuntimeError):
    pass


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def pick_backend(name: str) -> str:
    """'auto' -> 'unsloth' with a CUDA GPU, else 'hf'. Asking for unsloth without a GPU is an error."""
    if name == "auto":
        return "unsloth" if cuda_available() else "hf"
    if name == "unsloth" and not cuda_available():
        raise BackendError("train.backend=unsloth needs a CUDA GPU and none is visible "
                           "(torch.cuda.is_available() is False); use train.backend=hf to train on this machine.")
    return name


def activate_backend(name: str) -> str:
    """Resolve the backend and, for unsloth, import it now, before transformers/trl/peft are imported."""
    backend = pick_backend(name)
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
    return tokenizer


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

    if not (Path(cfg.model.adapter) / "adapter_config.json").is_file():
        raise BackendError(f"model.adapter '{cfg.model.adapter}' has no adapter_config.json.")
    saved = PeftConfig.from_pretrained(cfg.model.adapter)
    pairs = [("r", saved.r, cfg.lora.r), ("alpha", saved.lora_alpha, cfg.lora.alpha),
             ("target_modules", sorted(saved.target_modules or []), sorted(cfg.lora.target_modules))]
    problems = [f"the adapter has {key}={old} but lora.{key} is {new}" for key, old, new in pairs if old != new]
    if problems:
        raise BackendError(f"model.adapter '{cfg.model.adapter}' does not match the config: {'; '.join(problems)}. "
                           "Set lora.* to the adapter's values to continue it.")


def unsloth_load_kwargs(cfg: Config, folder: Path) -> dict:
    return dict(model_name=str(folder), max_seq_length=cfg.model.max_seq_length, dtype=None,
                load_in_4bit=cfg.model.load_in_4bit, full_finetuning=False, token=cfg.model.token or None)


def unsloth_peft_kwargs(cfg: Config) -> dict:
    return dict(r=cfg.lora.r, target_modules=cfg.lora.target_modules, lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout, bias="none",
                use_gradient_checkpointing="unsloth" if cfg.train.gradient_checkpointing else False,
                random_state=cfg.train.seed, use_rslora=cfg.lora.use_rslora, loftq_config=None)


def unsloth_patch_kwargs(cfg: Config) -> dict:
    return dict(use_gradient_checkpointing=unsloth_peft_kwargs(cfg)["use_gradient_checkpointing"])


def _load_unsloth(cfg: Config, folder: Path):
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(**unsloth_load_kwargs(cfg, folder))
    check_targets(model, cfg.lora.target_modules)
    if not cfg.model.adapter:
        return FastLanguageModel.get_peft_model(model, **unsloth_peft_kwargs(cfg)), tokenizer
    from peft import PeftModel

    # A plain PeftModel skips what get_peft_model installs: Unsloth's checkpointing and its fused LoRA kernels.
    model = PeftModel.from_pretrained(model, cfg.model.adapter, is_trainable=True)
    return FastLanguageModel.patch_peft_model(model, **unsloth_patch_kwargs(cfg)), tokenizer


def _device_map(on_gpu: bool) -> dict | None:
    """Each process's whole model on its own GPU (plain data parallel); none where FSDP or DeepSpeed ZeRO-3 shard
    the model themselves (transformers refuses a device_map under ZeRO-3, and one defeats FSDP)."""
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
    dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if on_gpu else torch.float32
    quantized = on_gpu and cfg.model.load_in_4bit  # bitsandbytes 4-bit needs a GPU; CPU trains in fp32
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=dtype) if quantized else None
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
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, bias="none",
            target_modules=cfg.lora.target_modules, use_rslora=cfg.lora.use_rslora, task_type="CAUSAL_LM"))
    return model, AutoTokenizer.from_pretrained(folder)


LOADERS = {"unsloth": _load_unsloth, "hf": _load_hf}


def load_for_training(cfg: Config, backend: str):
    """The base model with a trainable LoRA adapter (new, or `model.adapter` continued), and its tokenizer."""
    from kit.hub import resolve_model

    if cfg.model.adapter:
        check_adapter(cfg)
    return LOADERS[backend](cfg, resolve_model(cfg.model))
