"""Speed, memory and utilisation of LoRA training, of GRPO steps and of the 16-bit merge, measured the same way.

    python -m kit.perf training '{"model_dir": "...", "backend": "unsloth", "seq": 2048}'   # one JSON line back
    result = run_isolated("training", model_dir=folder, backend="hf", seq=2048)              # the same, in a child

`scripts/gpu_check.py` (kit.gpu_check) is the recipe over these. Each measurement runs in a fresh process:
unsloth patches transformers for the whole process, and peak memory must not include a previous run's.

FLOPs follow the PaLM convention. LoRA on frozen weights costs about 4N per token (forward 2N, input gradients
2N, no weight gradients), N counting every matmul weight including the lm_head (tied or not), plus attention:
12 x layers x seq x (heads x head_dim), counted in full (no causal discount), plus 6 per LoRA parameter.
Model-FLOPs utilisation (MFU) divides what the model needs by the peak; hardware-FLOPs utilisation (HFU) adds the
forward that gradient checkpointing recomputes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GIB = 1 << 30
# Dense bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets; the first name found in the device's
# name wins, so the form factors that differ (PCIe, NVL) come before their SXM siblings.
DEVICE_PEAK_TFLOPS = [
    ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.4), ("H200 NVL", 835.0), ("H200", 989.4),
    ("H800 PCIe", 756.0), ("H800", 989.4), ("H20", 148.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0),
    ("L40", 181.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.2), ("RTX 3090", 71.0),
]


def peak_tflops(device: str) -> float | None:
    """The data-sheet dense bf16 peak of a device named as torch names it ('NVIDIA H100 80GB HBM3'), or None."""
    return next((peak for name, peak in DEVICE_PEAK_TFLOPS if name in device), None)


def matmul_tflops(size: int = 8192, repeats: int = 20) -> float:
    """A plain bf16 matmul's speed on this device (the GPU, else the CPU at a smaller size): the reachable peak."""
    import torch

    on_gpu = torch.cuda.is_available()
    size, repeats = (size, repeats) if on_gpu else (512, 3)
    a, b = (torch.randn(size, size, dtype=torch.bfloat16, device="cuda" if on_gpu else "cpu") for _ in range(2))
    for _ in range(3):
        a @ b
    if on_gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if on_gpu:
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def flops_per_token(config, seq: int, lora_params: int, checkpointing: bool) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) per trained token of LoRA on a Qwen3 `config` at sequence length `seq`."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    attention_width = config.num_attention_heads * config.head_dim
    per_layer = (2 * hidden * attention_width + 2 * hidden * config.num_key_value_heads * config.head_dim
                 + 3 * hidden * config.intermediate_size)
    layer_weights, head = layers * per_layer, config.vocab_size * hidden
    attention_forward = 4 * layers * seq * attention_width  # QK^T and softmax(.)V, 2 FLOPs a multiply-add
    model = 4 * (layer_weights + head) + 3 * attention_forward + 6 * lora_params
    recompute = 2 * layer_weights + attention_forward + 2 * lora_params if checkpointing else 0
    return model, model + recompute


def _training_config(model_dir: str, backend: str, seq: int, batch: int, accum: int, steps: int, lora_r: int):
    from kit.config import load_config

    return load_config(None, [
        f"model.name={model_dir}", "model.source=local", f"model.max_seq_length={seq}", f"train.backend={backend}",
        f"lora.r={lora_r}", f"lora.lora_alpha={lora_r}", f"train.per_device_train_batch_size={batch}",
        f"train.gradient_accumulation_steps={accum}", f"train.max_steps={steps}", "train.gradient_checkpointing=true",
        "train.logging_steps=1", "train.save_steps=100000", "train.warmup_steps=0", "tracking.wandb=disabled"])


def _step_timer(on_gpu: bool, started: float):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self.first_step_s = 0.0

        def on_step_begin(self, *args, **kwargs):
            if on_gpu:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            if on_gpu:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)
            self.first_step_s = self.first_step_s or time.perf_counter() - started

    return StepTimer()


def training(model_dir: str, backend: str, shape: str = "", seq: int = 2048, batch: int = 2, accum: int = 4,
             steps: int = 8, warmup: int = 2, lora_r: int = 32, cap_gib: float = 0, max_seq: int = 32768) -> dict:
    """Train `steps` steps of LoRA on random tokens through the kit's own loading and trainer, in this process.

    Returns tokens/s (median step after `warmup`), time to the first step (from the start of loading), peak GPU
    memory (allocated and reserved), MFU and HFU against the data-sheet and the measured matmul peak, kit.models.memory's
    estimate for the same shape, and with `cap_gib` the longest sequence that trains within that much memory.
    """
    from kit.training.backends import activate_backend

    backend = activate_backend(backend)  # unsloth first, before transformers
    import torch
    from transformers import AutoConfig

    from kit.training.backends import load_for_training

    started = time.perf_counter()
    on_gpu = torch.cuda.is_available()
    cfg = _training_config(model_dir, backend, seq, batch, accum, steps, lora_r)
    model, tokenizer = load_for_training(cfg, backend)
    timer = _timed_steps(cfg, model, tokenizer, steps * accum * batch, started)
    tokens_per_s = batch * accum * seq / statistics.median(timer.times[warmup:] or timer.times)
    lora_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = AutoConfig.from_pretrained(model_dir)
    result = {"shape": shape, "backend": backend, "seq": seq, "batch": batch, "accum": accum, "lora_r": lora_r,
              "steps": len(timer.times), "tokens_per_s": round(tokens_per_s, 1),
              "first_step_s": round(timer.first_step_s, 1), "lora_params": lora_params,
              **_memory(on_gpu), **_utilisation(tokens_per_s, config, seq, lora_params),
              "estimate_gb": _estimate(shape, seq, batch, lora_r, backend)}
    if cap_gib:
        step = 1024 if on_gpu else 128
        result.update(longest_seq=longest_sequence(model, cap_gib, max_seq, step), cap_gib=cap_gib if on_gpu else None)
    return result


def _timed_steps(cfg, model, tokenizer, rows: int, started: float):
    """Train on `rows` random token rows (the same for every backend) through the kit's trainer; the step timer."""
    import torch
    from datasets import Dataset

    from kit.training.trainer import build_trainer

    on_gpu = torch.cuda.is_available()
    generator = torch.Generator().manual_seed(0)
    shape = (rows, cfg.model.max_seq_length)
    ids = torch.randint(100, min(len(tokenizer), 150000), shape, generator=generator).tolist()
    timer = _step_timer(on_gpu, started)
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, model, tokenizer, Dataset.from_dict({"input_ids": ids, "labels": ids}), None,
                                Path(out), progress=False, callbacks=[timer])
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    return timer


def _memory(on_gpu: bool) -> dict:
    import torch

    if not on_gpu:
        return {"device": "cpu", "peak_allocated_gb": None, "peak_reserved_gb": None}
    return {"device": torch.cuda.get_device_name(0),
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2)}


def _utilisation(tokens_per_s: float, config, seq: int, lora_params: int) -> dict:
    import torch

    model, hardware = flops_per_token(config, seq, lora_params, checkpointing=True)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    sheet, measured = peak_tflops(device), matmul_tflops()
    out = {"model_tflops": round(tokens_per_s * model / 1e12, 2), "matmul_tflops": float(f"{measured:.3g}"),
           "datasheet_tflops": sheet}
    for name, flops in (("mfu", model), ("hfu", hardware)):
        out[name] = round(tokens_per_s * flops / (sheet * 1e12), 4) if sheet else None
        out[f"{name}_of_matmul"] = round(tokens_per_s * flops / (measured * 1e12), 4)
    return out


def _estimate(shape: str, seq: int, batch: int, lora_r: int, backend: str) -> float | None:
    from kit.models.memory import estimate
    from kit.models.profiles import TRAINABLE

    if shape not in TRAINABLE:
        return None
    return round(estimate(shape, seq_len=seq, batch=batch, lora_r=lora_r, backend=backend).total_gb, 2)


def longest_fitting(fits, step: int, limit: int) -> int:
    """The largest multiple of `step` up to `limit` for which `fits(n)` holds, assuming it holds below a threshold:
    doubling from `step`, then bisection. 0 when even `step` does not fit."""
    good, n = 0, step
    while n <= limit and fits(n):
        good, n = n, n * 2
    bad = n if n <= limit else limit + step  # the first length that failed, or just past the limit
    while bad - good > step:
        mid = (good + bad) // 2 // step * step
        good, bad = (mid, bad) if fits(mid) else (good, mid)
    return good


def longest_sequence(model, cap_gib: float, max_seq: int, step: int = 1024) -> int:
    """The longest sequence (batch 1, a multiple of `step`) whose training step (forward, backward, optimizer) fits
    in `cap_gib` GiB of GPU memory, the card's whole memory: this process's CUDA context counts against it.
    Without a GPU there is no cap, and the same steps run up to `max_seq` (the rehearsal)."""
    import gc

    import torch

    on_gpu = torch.cuda.is_available()
    if on_gpu:
        total = torch.cuda.get_device_properties(0).total_memory
        context = total - torch.cuda.mem_get_info()[0] - torch.cuda.memory_reserved()
        torch.cuda.set_per_process_memory_fraction(max(0.0, (cap_gib * GIB - context) / total))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def fits(n: int) -> bool:
        ids = torch.randint(100, model.config.vocab_size, (1, n), device=model.device)
        try:
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            return True
        except torch.OutOfMemoryError:
            return False
        finally:
            optimizer.zero_grad(set_to_none=True)
            del ids
            gc.collect()
            if on_gpu:
                torch.cuda.empty_cache()

    try:
        return longest_fitting(fits, step, max_seq)
    finally:
        if on_gpu:
            torch.cuda.set_per_process_memory_fraction(1.0)


def _grpo_config(model_dir: str, backend: str, out: str, steps: int, generations: int, completion: int):
    """The smoke config's GRPO on a model folder: one problem a step, its completions in one pass, no checkpoints."""
    from kit.config import load_config

    return load_config("configs/smoke.yaml", [
        f"model.name={model_dir}", "model.source=local", f"model.max_seq_length={96 + completion}",
        "model.load_in_4bit=true", f"train.backend={backend}", f"train.output_dir={out}", "train.run_name=grpo",
        "train.gradient_checkpointing=true", "lora.r=32", "lora.lora_alpha=32", "grpo.start_from=base",
        f"grpo.max_steps={steps}", f"grpo.num_generations={generations}", "grpo.prompts_per_step=1",
        f"grpo.per_device_train_batch_size={generations}", f"grpo.max_completion_length={completion}",
        "grpo.save_steps=100000", "grpo.eval_before_after=false", "tracking.wandb=disabled"])


def grpo(model_dir: str, backend: str, shape: str = "", steps: int = 4, generations: int = 8, completion: int = 256,
         warmup: int = 1) -> dict:
    """`steps` GRPO steps through the kit's own GRPO run (kit.training.reinforce: prompts, rewards, trainer, adapter) on the sample
    problems, one problem and `generations` completions of up to `completion` tokens a step, in this process.

    Returns the median step time after `warmup`, the completion tokens per second of a whole step (generation,
    rewards and the update), the generation engine, the peak GPU memory beside kit.models.memory's GRPO estimate, and the
    rewards logged.
    """
    import os

    from kit.training.backends import activate_backend

    backend = activate_backend(backend)  # unsloth first, before transformers
    import torch

    from kit.models.memory import grpo_estimate_for
    from kit.paths import PROJECT_ROOT
    from kit.training.metrics import read_metrics
    from kit.training.reinforce import generation
    from kit.training.reinforce import grpo as run_grpo

    os.chdir(PROJECT_ROOT)  # the smoke config's sample data
    started, on_gpu = time.perf_counter(), torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as out:
        cfg = _grpo_config(model_dir, backend, out, steps, generations, completion)
        timer = _step_timer(on_gpu, started)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        result = run_grpo(cfg, progress=False, callbacks=[timer])
        logged = [r for r in read_metrics(result.run_dir) if "reward" in r]
    step_s = statistics.median(timer.times[warmup:] or timer.times)
    generated = statistics.mean(r["completions/mean_length"] for r in logged) * generations
    estimate = grpo_estimate_for(cfg, backend)
    rewards = sorted(k.split("/")[1] for k in logged[-1] if k.startswith("rewards/") and k.endswith("/mean"))
    return {"shape": shape, "backend": backend, "generation": generation(cfg, backend), "steps": len(timer.times),
            "completions_per_step": generations, "max_completion_length": completion, "step_s": round(step_s, 2),
            "completion_tokens_per_s": round(generated / step_s, 1), "first_step_s": round(timer.first_step_s, 1),
            **_memory(on_gpu), "estimate_gb": round(estimate.total_gb, 2) if estimate else None,
            "rewards_logged": rewards}


def merge(base: str, lora_r: int = 32, out: str = "", check: bool = True) -> dict:
    """Merge a random LoRA adapter into `base` as `scripts/export.py` does, in this process; report its time to the
    disk (os.sync included), CPU seconds, the peak RSS of the merge alone and with its check (`check`), the largest
    shard and tensor, the adapter's size, and whether CUDA was ever touched."""
    import os
    import resource
    import shutil

    import torch
    from transformers import AutoTokenizer

    from kit.export.export import check_merge
    from kit.export.merge import merge_lora
    from kit.export.shards import read_header, shard_files
    from kit.models.tiny import build_random_adapter

    def rss_gb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux reports KiB

    base = Path(base)
    entries = {name: e for shard in shard_files(base) for name, e in read_header(shard)[0].items()}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        adapter = build_random_adapter(base, tmp / "adapter", r=lora_r)
        target = Path(out) if out else tmp / "merged"
        target.mkdir(parents=True, exist_ok=True)
        after_imports, start, cpu = rss_gb(), time.perf_counter(), os.times()
        merged = merge_lora(adapter, base, target)
        os.sync()
        merge_s, merge_rss = time.perf_counter() - start, rss_gb()
        cpu = [b - a for a, b in zip(cpu, os.times(), strict=True)]
        result = {"base": str(base), "shards": len(shard_files(base)), "weights_merged": merged,
                  "largest_shard_gb": round(max(p.stat().st_size for p in shard_files(base)) / 1e9, 2),
                  "largest_tensor_gb": round(max(e.end - e.start for e in entries.values()) / 1e9, 3),
                  "adapter_gb": round((adapter / "adapter_model.safetensors").stat().st_size / 1e9, 3),
                  "model_gb": round(sum(p.stat().st_size for p in shard_files(target)) / 1e9, 2),
                  "merge_s": round(merge_s, 2), "user_s": round(cpu[0], 1), "system_s": round(cpu[1], 1),
                  "rss_after_imports_gb": round(after_imports, 2), "peak_rss_merge_gb": round(merge_rss, 2)}
        if check:
            diff, scale = check_merge(adapter, base, target, AutoTokenizer.from_pretrained(adapter))
            result |= {"peak_rss_with_check_gb": round(rss_gb(), 2), "max_logit_diff": round(diff, 5),
                       "logit_scale": round(scale, 3)}
        result["cuda_used"] = torch.cuda.is_initialized()
        if not out:
            shutil.rmtree(target)
    return result


MEASUREMENTS = {"training": training, "grpo": grpo, "merge": merge}


def run_isolated(measurement: str, timeout: float | None = None, **kwargs) -> dict:
    """Run a measurement in a fresh Python process; its result, or `{"error": <what went wrong>}`."""
    command = [sys.executable, "-m", "kit.perf", measurement, json.dumps(kwargs)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", **kwargs}
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if lines:
        return json.loads(lines[-1].removeprefix("RESULT "))
    if done.returncode < 0:
        why = f"killed by signal {-done.returncode}" + (" (out of memory?)" if done.returncode == -9 else "")
    else:
        why = next((line for line in reversed((done.stderr + done.stdout).splitlines()) if line.strip()),
                   f"exited {done.returncode} without output")
    return {"error": why[:300], **kwargs}


if __name__ == "__main__":
    print("RESULT " + json.dumps(MEASUREMENTS[sys.argv[1]](**json.loads(sys.argv[2]))), flush=True)
