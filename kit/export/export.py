"""Export a trained adapter for serving: the adapter alone, or merged into the 16-bit base for vLLM.

    result = export_run("runs/qwen3-14b-math", cfg)

The merge goes into the 16-bit base (from ModelScope through kit.hub), never into dequantized 4-bit weights, on the
CPU a tensor at a time (kit.export.merge); each export is renamed into place when complete, then its logits are
compared with base + adapter.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kit.config import Config
from kit.errors import KitError
from kit.files import atomic_folder

THINKING_OFF_CONDITION = "enable_thinking is defined and enable_thinking is false"
DEFAULT_OFF_CONDITION = "enable_thinking is not defined or enable_thinking is false"
VERIFY_PROMPTS = [
    [{"role": "user", "content": "Solve for x: 3x + 5 = 20."}],
    [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "What is recursion?"}],
    [{"role": "user", "content": "Write a haiku about rain."}],
]


class ExportError(KitError, RuntimeError):
    pass


@dataclass
class ExportResult:
    folders: dict[str, Path] = field(default_factory=dict)  # format -> folder
    kept: list[str] = field(default_factory=list)  # formats complete from an earlier export, left as they were
    max_logit_diff: float | None = None  # merged vs base + adapter, over the verify prompts
    logit_scale: float | None = None  # the largest |logit| seen, for context
    serve_command: str = ""
    client_snippet: str = ""


def with_thinking_default(template: str, thinking: bool) -> str:
    """Qwen3's template with the mode a request that does not set `enable_thinking` gets: with `thinking=False`, the
    empty think block, so a model trained for non-thinking use behaves so when served."""
    if thinking:
        return template
    if THINKING_OFF_CONDITION not in template:
        raise ExportError("this chat template has no Qwen3 enable_thinking switch; cannot set thinking_default.")
    return template.replace(THINKING_OFF_CONDITION, DEFAULT_OFF_CONDITION)


def _export_folder(target: Path, overwrite: bool):
    """An atomic folder for an export, refusing to replace an existing one unless asked."""
    if target.exists() and not overwrite:
        raise ExportError(f"{target} already exists; pass overwrite (export.overwrite=true) to replace it.")
    return atomic_folder(target)


def _save_tokenizer(tokenizer, folder: Path, thinking_default: bool) -> None:
    """The tokenizer with the served thinking default, checked to render as the trained one (guard same-template)."""
    original = tokenizer.chat_template
    tokenizer.chat_template = with_thinking_default(original, thinking_default)
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.chat_template = original  # the caller's tokenizer keeps rendering as it did
    _check_template(tokenizer, folder)


def _check_template(trained, folder: Path) -> None:
    from transformers import AutoTokenizer

    from kit.training.guards import same_template

    same_template(trained, AutoTokenizer.from_pretrained(folder), f"the exported tokenizer ({folder.name})")


def export_adapter(adapter: Path, out: Path, *, thinking_default: bool = True, overwrite: bool = False) -> Path:
    """The LoRA adapter (safetensors) with the tokenizer, for `vllm serve --enable-lora` or PEFT."""
    from transformers import AutoTokenizer

    with _export_folder(out, overwrite) as tmp:
        for name in ("adapter_model.safetensors", "adapter_config.json"):
            shutil.copy2(adapter / name, tmp / name)
        _save_tokenizer(AutoTokenizer.from_pretrained(adapter), tmp, thinking_default)
    return out


VERIFY_LAYERS = 2  # every layer is merged by the same code; two layers keep the check small at any model size
BF16_ROUNDING = 2**-8  # the largest relative error of rounding an fp32 value to bf16


def _logits(model, tokenizer):
    import torch

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in VERIFY_PROMPTS]
    with torch.inference_mode():
        return [model(**tokenizer(t, return_tensors="pt", add_special_tokens=False)).logits.float() for t in texts]


def _first_layers(folder: Path, dtype):
    """The model in `folder` cut to its first VERIFY_LAYERS layers, on the CPU (the later ones are never read)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # the later layers' weights are skipped on purpose: no load report for them
    try:
        return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, num_hidden_layers=VERIFY_LAYERS).eval()
    finally:
        logging.set_verbosity(verbosity)


def check_merge(adapter: Path, base: Path, merged: Path, tokenizer) -> tuple[float, float]:
    """The merged folder against peft's fp32 merge of the same adapter, both cut to their first layers (fits any
    size): every changed weight equal to bf16 rounding, else ExportError. Returns (max logit difference, max
    |logit|)."""
    import logging

    import torch
    from peft import PeftModel

    from kit.export.merge import load_lora

    logging.getLogger("peft").setLevel(logging.ERROR)  # the cut base lacks the later layers' LoRA modules
    reference = PeftModel.from_pretrained(_first_layers(base, torch.float32), str(adapter)).eval()
    expected = _logits(reference, tokenizer)
    changed = load_lora(adapter).keys()
    reference = {k: w for k, w in reference.merge_and_unload().state_dict().items() if k in changed}  # the rest freed
    ours = _first_layers(merged, torch.bfloat16)
    got = _logits(ours, tokenizer)
    weights = ours.state_dict()
    wrong = [k for k, w in reference.items()
             if not torch.allclose(weights[k].float(), w, rtol=BF16_ROUNDING, atol=1e-7)]
    if wrong or not reference:
        raise ExportError(f"the merged weights differ from peft's merge of the same adapter ({len(wrong)} of "
                          f"{len(reference)} checked, e.g. {(wrong or ['none checked'])[0]}); the export was not kept.")
    diff = max(float((a - b).abs().max()) for a, b in zip(expected, got, strict=True))
    return diff, max(float(a.abs().max()) for a in expected)


def export_merged(adapter: Path, base: Path, out: Path, *, thinking_default: bool = True,
                  overwrite: bool = False) -> tuple[Path, float, float]:
    """Merge the adapter into the 16-bit base on the CPU with the tokenizer and generation config vLLM reads, then
    check it (`check_merge`). Returns (folder, max logit difference, largest logit)."""
    from transformers import AutoTokenizer, GenerationConfig

    from kit.export.merge import merge_lora
    from kit.models.profiles import PRESETS

    tokenizer = AutoTokenizer.from_pretrained(adapter)
    with _export_folder(out, overwrite) as tmp:
        merge_lora(adapter, base, tmp)
        _save_tokenizer(tokenizer, tmp, thinking_default)
        generation = GenerationConfig.from_pretrained(base) if (base / "generation_config.json").is_file() else \
            GenerationConfig()
        generation.update(do_sample=True, **PRESETS[thinking_default])
        generation.save_pretrained(tmp)
        diff, scale = check_merge(adapter, base, tmp, tokenizer)
    return out, diff, scale


VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM's --max-lora-rank accepts
CLIENT_SNIPPET = """from openai import OpenAI

client = OpenAI(base_url="http://localhost:8000/v1", api_key="EMPTY")
messages = [{"role": "user", "content": "What is 17 * 23?"}]
thinking = client.chat.completions.create(
    model="qwen3-kit", messages=messages, temperature=0.6, top_p=0.95,
    extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": True}})
print("reasoning:", thinking.choices[0].message.reasoning)  # older vLLM: .reasoning_content
print("answer:", thinking.choices[0].message.content)
direct = client.chat.completions.create(
    model="qwen3-kit", messages=messages, temperature=0.7, top_p=0.8,
    extra_body={"top_k": 20, "chat_template_kwargs": {"enable_thinking": False}})
print("answer:", direct.choices[0].message.content)"""


def max_lora_rank(adapter: Path) -> int:
    """The smallest `--max-lora-rank` vLLM accepts that holds the adapter's rank (its r, or a larger rank_pattern)."""
    saved = json.loads((adapter / "adapter_config.json").read_text())
    rank = max([saved["r"], *(saved.get("rank_pattern") or {}).values()])
    fits = [r for r in VLLM_LORA_RANKS if r >= rank]
    if not fits:
        raise ExportError(f"{adapter} has LoRA rank {rank}; vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}: "
                          "serve the merged export instead.")
    return fits[0]


def serve_instructions(merged: Path | None, adapter: Path | None, base: Path | None,
                       thinking_default: bool = True) -> tuple[str, str]:
    """The `vllm serve` command (merged folder, or base with adapter) and a client snippet for both thinking modes."""
    if merged is not None:
        command = f"vllm serve {merged} --reasoning-parser qwen3 --served-model-name qwen3-kit"
    else:
        command = (f"vllm serve {base} --reasoning-parser qwen3 --enable-lora "
                   f"--lora-modules qwen3-kit={adapter} --max-lora-rank {max_lora_rank(adapter)}")
    if not thinking_default:
        # vLLM's qwen3 parser assumes thinking unless the request (or this server default) says otherwise; without
        # it, a request that says nothing gets its answer filed under `reasoning` and an empty `content`.
        command += """ --default-chat-template-kwargs '{"enable_thinking": false}'"""
    return command, CLIENT_SNIPPET


def _export_4bit_with_unsloth(adapter: Path, out: Path, overwrite: bool) -> Path:
    """Merged into the dynamic 4-bit weights through Unsloth (a GPU): smaller, but vLLM loads them less reliably."""
    from kit.training.backends import activate_backend

    activate_backend("unsloth", asked=("export.formats merged_4bit_forced (Unsloth's)",  # no GPU: one sentence
                                       "export.formats=[adapter,merged_16bit]"))
    from unsloth import FastLanguageModel

    model, tokenizer = FastLanguageModel.from_pretrained(str(adapter), load_in_4bit=True)
    with _export_folder(out, overwrite) as tmp:
        model.save_pretrained_merged(str(tmp), tokenizer, save_method="merged_4bit_forced")
        _check_template(tokenizer, tmp)  # Unsloth writes the tokenizer itself
    return out


MADE_FROM = "made_from.json"  # in each export folder: the adapter's hash and the settings it was made with


def made_from(adapter: Path, cfg: Config) -> dict:
    """What an export is made from: the hash of every file of the adapter folder, and the settings that shape it."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in adapter.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return {"adapter_sha256": digest.hexdigest(), "thinking_default": cfg.export.thinking_default,
            "model": cfg.model.name, "revision": cfg.model.revision}


def _stale(folder: Path, record: dict) -> str:
    """What differs between an existing export and `record` ('' when made from the same)."""
    from kit.files import read_cache

    saved = read_cache(folder / MADE_FROM)  # absent or damaged: nothing to trust, so made again
    if not isinstance(saved, dict):
        return "it records nothing of what it was made from"
    return ", ".join("another adapter (the run was trained further)" if k == "adapter_sha256" else
                     f"{k} {saved.get(k)!r} (now {v!r})" for k, v in record.items() if saved.get(k) != v)


def export_run(run_dir: str | Path, cfg: Config) -> ExportResult:
    """Export a run's adapter in every format of `cfg.export.formats`, holding the run's lock. An existing folder is
    kept when its made_from.json matches this adapter and settings, else made again: a rerun finishes a cut-short
    export."""
    from kit.training.metrics import broken_switch, read_metrics
    from kit.training.runs import run_lock, verify_adapter

    run_dir = Path(run_dir)
    adapter = run_dir / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ExportError(f"{run_dir} has no finished adapter ({adapter}); train it to the end first.")
    if (why := broken_switch(read_metrics(run_dir), cfg.train.switch_drop)) and not cfg.export.allow_broken_switch:
        raise ExportError(f"{run_dir}: {why}, so the model may ignore enable_thinking; nothing was exported. See "
                          f"`qwen3-kit eval --run {run_dir}`; export.allow_broken_switch=true exports it anyway.")
    with run_lock(run_dir, "exported"):
        verify_adapter(adapter)
        return _export(adapter, Path(cfg.export.out_dir) if cfg.export.out_dir else run_dir / "export", cfg)


def _export(adapter: Path, root: Path, cfg: Config) -> ExportResult:
    from kit.export.shards import shard_files
    from kit.files import write_atomic, writing_into
    from kit.hub import resolve_model

    e, record = cfg.export, made_from(adapter, cfg)
    base = resolve_model(cfg.model, "base_16bit")  # merged into, or named in the LoRA serve command
    result = ExportResult()
    for fmt in e.formats:
        if (root / fmt).exists() and not e.overwrite:
            if not (why := _stale(root / fmt, record)):
                result.kept.append(fmt)
                result.folders[fmt] = root / fmt
            else:
                print(f"{root / fmt} was made from {why}: making it again.")
    todo = [fmt for fmt in e.formats if fmt not in result.kept]
    needed = sum(p.stat().st_size for p in shard_files(base)) / 1e9 if "merged_16bit" in todo else None
    with writing_into(root, needed):
        if "adapter" in todo:
            result.folders["adapter"] = export_adapter(adapter, root / "adapter", thinking_default=e.thinking_default,
                                                       overwrite=True)
        if "merged_16bit" in todo:
            folder, result.max_logit_diff, result.logit_scale = export_merged(
                adapter, base, root / "merged_16bit", thinking_default=e.thinking_default, overwrite=True)
            result.folders["merged_16bit"] = folder
        if "merged_4bit_forced" in todo:
            result.folders["merged_4bit_forced"] = _export_4bit_with_unsloth(adapter, root / "merged_4bit_forced",
                                                                             True)
        for fmt in todo:  # after the folder is whole: a kill before this leaves it unrecorded, so made again
            write_atomic(root / fmt / MADE_FROM, json.dumps(record, indent=2))
    merged = result.folders.get("merged_16bit")
    result.serve_command, result.client_snippet = serve_instructions(
        merged, result.folders.get("adapter"), None if merged else base, e.thinking_default)
    return result
