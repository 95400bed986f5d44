"""Before paying for hours: does a config fit this GPU, how fast does it train, how long and how much will it cost
(`qwen3-kit probe`, whose help says what is measured). Each finding is printed and saved to <run folder>/probe.json
the moment it exists, so a probe stopped half-way keeps what it measured. Searches are one training step a trial
(doubling, then bisection; running out of memory answers "no"); on a CPU they stop at twice the config's values.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from kit.config import Config
from kit.config.schema import changed
from kit.errors import KitError

GB = 1e9
OUT_OF_MEMORY = "out of memory"
MAX_BATCH = 32  # the batch search's ceiling: beyond it accumulation does the same job
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


def flops_per_token(config, seq: int, lora_params: int, checkpointing: bool) -> tuple[float, float]:
    """(model FLOPs, hardware FLOPs) per trained token of LoRA on a Qwen3 `config` at length `seq`, by PaLM's
    convention: frozen weights 4N (the lm_head counted), attention 12 x layers x seq x width, 6 per LoRA parameter;
    hardware FLOPs add the forward that gradient checkpointing recomputes."""
    hidden, layers = config.hidden_size, config.num_hidden_layers
    attention_width = config.num_attention_heads * config.head_dim
    per_layer = (2 * hidden * attention_width + 2 * hidden * config.num_key_value_heads * config.head_dim
                 + 3 * hidden * config.intermediate_size)
    layer_weights, head = layers * per_layer, config.vocab_size * hidden
    attention_forward = 4 * layers * seq * attention_width  # QK^T and softmax(.)V, 2 FLOPs a multiply-add
    model = 4 * (layer_weights + head) + 3 * attention_forward + 6 * lora_params
    recompute = 2 * layer_weights + attention_forward + 2 * lora_params if checkpointing else 0
    return model, model + recompute


def largest_fitting(fits, start: int, step: int, limit: int) -> int:
    """The largest multiple of `step` up to `limit` where `fits(n)` (0: none): doubling or halving, then bisection."""
    good, bad = 0, limit + step  # fits(good) held (0: nothing yet); fits(bad) failed (or is past the limit)
    n = min(max(start // step * step, step), limit)
    while bad - good > step:
        good, bad = (n, bad) if fits(n) else (good, n)
        if not good:
            n = max(bad // 2 // step * step, step)
        elif bad > limit:
            n = min(2 * good, limit)
        else:
            n = (good + bad) // 2 // step * step
    return good


def probe(cfg: Config, *, price_per_hour: float | None = None, steps: int = 3, search: bool = True,
          cap_gib: float = 0, max_seq: int = 32768) -> dict:
    """Measure `cfg` here and return probe.json's content; KitError without a GPU (but for tiny) or a failed
    measurement."""
    import torch

    if not torch.cuda.is_available() and cfg.model.name not in ("", "tiny"):
        from kit.machine import no_gpu_reason

        raise KitError(f"the probe measures {cfg.model.name} on a GPU and none is usable here: {no_gpu_reason()}. "
                       "On a CPU it runs the tiny default only (qwen3-kit probe configs/smoke.yaml).")
    if steps < 2:
        raise KitError(f"the probe needs at least 2 steps (the first one warms up), not {steps}.")
    from kit.training.backends import activate_backend

    backend = activate_backend(cfg.train.backend, cfg.model.name)  # unsloth first, before transformers
    from kit.machine import release_memory
    from kit.training.runs import run_folder, run_lock

    cfg = replace(cfg, tracking=replace(cfg.tracking, wandb="disabled"))  # a probe's steps are no run to track
    folder = run_folder(cfg)
    record = _Record(folder / "probe.json", {"config": changed(cfg), "backend": backend,
                                             "date": time.strftime("%Y-%m-%d %H:%M")})
    try:
        with run_lock(folder):
            _measure(cfg, backend, record, price_per_hour, steps, search, cap_gib, max_seq)
    finally:
        release_memory()  # the probe's model, for the training that follows in a notebook
    failed = [f"{key}: {error}" for key in ("data", "full_length", "longest_seq", "largest_batch")
              if (error := record.data.get(key, {}).get("error")) not in (None, OUT_OF_MEMORY)]
    if failed:
        raise KitError(f"a measurement failed ({'; '.join(failed)}); what was measured is in {record.path}.")
    return record.data


class _Record:
    """The probe's findings: each one printed, and the JSON rewritten whole, the moment it exists."""

    def __init__(self, path: Path, data: dict):
        self.path, self.data = path, data

    def add(self, line: str = "", **found) -> None:
        from kit.files import write_atomic

        self.data.update(found)
        write_atomic(self.path, json.dumps(self.data, indent=1))
        if line:
            print(f"probe: {line}", flush=True)


def _measure(cfg: Config, backend: str, record: _Record, price_per_hour, steps, search, cap_gib, max_seq) -> None:
    import torch

    from kit.data import prepare_data
    from kit.models.memory import estimate_for
    from kit.training.backends import load_for_training, load_tokenizer, precision
    from kit.training.sft import mix_epochs, total_steps

    started, on_gpu = time.perf_counter(), torch.cuda.is_available()
    card = _card(cap_gib)  # the cap is set before anything loads
    est = estimate_for(cfg, backend) if on_gpu else None
    record.add(card["device"] + (f", {card['card_gb']} GB for this process (CUDA context {card['context_gb']} GB)"
                                 if on_gpu else " (no GPU: timings only; memory is not measured)"),
               **card, estimate_gb=round(est.total_gb, 2) if est else None)
    epochs = mix_epochs(cfg)
    prepared = prepare_data(cfg, load_tokenizer(cfg), epochs=epochs)
    model, tokenizer = load_for_training(cfg, backend)
    t, length = cfg.train, cfg.model.max_seq_length
    batch, accum = t.per_device_train_batch_size, t.gradient_accumulation_steps
    record.add(f"{cfg.model.name} loaded in {time.perf_counter() - started:.0f} s: {precision(cfg, backend, on_gpu)}, "
               f"{backend}, batch {batch} x {accum}, length {length}", load_s=round(time.perf_counter() - started, 1))

    def steps_on(rows, n: int = length, b: int = batch, a: int = accum, count: int = steps) -> dict:
        return _steps(cfg, backend, model, tokenizer, rows, count, n, b, a)

    data = steps_on(prepared.train.remove_columns("source"))
    first = data.pop("first_end", None)  # from the start: the data, the model, compilation, the first step
    record.add("your data: " + _line(data, card), data=data, first_step_s=round(first - started, 1) if first else None)
    full = steps_on(_full_rows(tokenizer, batch * accum * steps, length))
    full.pop("first_end", None)
    if full["fits"]:
        full.update(_utilisation(model, full["tokens_per_s"], length, cfg.train.gradient_checkpointing, card))
    estimated = f"; estimated {est.total_gb:.1f} GB (kit.models.memory)" if est else ""
    record.add(f"full-length rows ({batch} x {accum} x {length} tokens a step): {_line(full, card)}{estimated}",
               full_length=full)
    total = total_steps(cfg, len(prepared.train), epochs)
    eta = data["s_per_step"] * total if data["fits"] else None
    cost = round(eta / 3600 * price_per_hour, 2) if eta and price_per_hour else None
    record.add(_run_line(total, eta, price_per_hour, cost),
               run={"steps": total, "eta_s": round(eta) if eta else None, "price_per_hour": price_per_hour,
                    "cost": cost})
    if search:
        known = {(length, batch): full}
        seq_limit = min(max_seq, model.config.max_position_embeddings) if on_gpu else 2 * length
        trial = _trials(lambda n, b: known.get((n, b)) or steps_on(_full_rows(tokenizer, b, n), n, b, 1, 1), record)
        record.add(longest_seq=trial("length", batch, length, min(1024, length), seq_limit))
        record.add(largest_batch=trial("batch", length, batch, 1, MAX_BATCH if on_gpu else 2 * batch))
    record.add(advice=advice(cfg, full["fits"], record.data.get("longest_seq", {}).get("value"),
                             record.data.get("largest_batch", {}).get("value")))
    for line in record.data["advice"]:
        print(f"  change: {line}")
    print(f"saved: {record.path}")


def _card(cap_gib: float) -> dict:
    """The device, the memory this process may use (the card's, or `cap_gib` GiB) and what is already held."""
    import torch

    if not torch.cuda.is_available():
        return {"device": "cpu", "card_gb": None, "context_gb": None, "cap_gib": None}
    free, total = torch.cuda.mem_get_info()  # creates this process's CUDA context first
    held = total - free
    if cap_gib:
        torch.cuda.set_per_process_memory_fraction(max(0.0, (cap_gib * 2**30 - held) / total))
    usable = min(total, cap_gib * 2**30) if cap_gib else total
    return {"device": torch.cuda.get_device_name(0), "card_gb": round(usable / GB, 1),
            "context_gb": round(held / GB, 2), "cap_gib": cap_gib or None}


def _full_rows(tokenizer, rows: int, length: int):
    """`rows` rows of `length` random token ids, every one trained: the same rows for every backend."""
    import torch
    from datasets import Dataset

    ids = torch.randint(0, len(tokenizer), (rows, length), generator=torch.Generator().manual_seed(0)).tolist()
    return Dataset.from_dict({"input_ids": ids, "labels": ids})


def _steps(cfg: Config, backend: str, model, tokenizer, rows, steps: int, length: int, batch: int,
           accum: int) -> dict:
    """`steps` optimizer steps on `rows`: times, tokens/s, peak memory, mode; a failure is a result (`fits` False)."""
    import torch

    from kit.training.trainer import build_trainer

    for module in model.modules():  # Unsloth cuts input_ids (not labels) to the length it stored at loading
        if hasattr(module, "max_seq_length"):
            module.max_seq_length = length
    run = replace(cfg, model=replace(cfg.model, max_seq_length=length), train=replace(
        cfg.train, max_steps=steps, per_device_train_batch_size=batch, gradient_accumulation_steps=accum,
        save_steps=10**9, logging_steps=1))
    clock = _clock(torch.cuda.is_available())
    _release(backend)
    try:
        with tempfile.TemporaryDirectory() as out:
            trainer = build_trainer(run, model, tokenizer, rows, None, Path(out), progress=False, callbacks=[clock])
            trainer.args.include_num_input_tokens_seen = "non_padding"  # tokens/s counts real tokens, not padding
            trainer.train()
        found = {"fits": True, **clock.summary()}
    except Exception as e:  # noqa: BLE001 - a measurement that failed is a result, printed and saved as one
        oom = isinstance(e, torch.OutOfMemoryError)
        found = {"fits": False, "error": OUT_OF_MEMORY if oom else f"{type(e).__name__}: {e}"[:300]}
    trainer = None
    found.update(_peak())
    _release(backend)
    return found


def _release(backend: str) -> None:
    """Free what the last steps left: Unsloth resets its checkpointing buffers only after a train() that returned."""
    import torch

    from kit.machine import release_memory

    if backend == "unsloth":
        from unsloth_zoo import gradient_checkpointing as offload

        if getattr(offload, "GPU_BUFFERS", None) is not None:  # absent until Unsloth's checkpointing first runs
            offload.reset_unsloth_gradient_checkpointing_buffers()
    release_memory()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _peak() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"peak_reserved_gb": None, "peak_allocated_gb": None}
    return {"peak_reserved_gb": round(torch.cuda.max_memory_reserved() / GB, 2),
            "peak_allocated_gb": round(torch.cuda.max_memory_allocated() / GB, 2)}


def _clock(on_gpu: bool):
    """A callback timing each optimizer step end to end, counting its tokens, noting the model's mode at the first."""
    import torch
    from transformers import TrainerCallback

    def now() -> float:
        if on_gpu:
            torch.cuda.synchronize()
        return time.perf_counter()

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.ends, self.tokens, self.mode = [now()], [0], {}

        def on_step_begin(self, args, state, control, model=None, **kwargs):
            if not self.mode:
                self.mode = {"training": model.training, "checkpointing": any(
                    getattr(m, "gradient_checkpointing", False) for m in model.modules())}

        def on_step_end(self, args, state, control, **kwargs):
            self.ends.append(now())
            self.tokens.append(state.num_input_tokens_seen)

        def summary(self) -> dict:
            times = [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]
            tokens = [b - a for a, b in zip(self.tokens, self.tokens[1:], strict=False)]
            later, counted = (times[1:], tokens[1:]) if len(times) > 1 else (times, tokens)  # the first warms up
            return {"steps": len(times), "first_step_s": round(times[0], 2),
                    "s_per_step": round(statistics.median(later), 3),
                    "tokens_per_step": round(sum(counted) / len(counted)),
                    "tokens_per_s": round(sum(counted) / sum(later), 1), **self.mode, "first_end": self.ends[1]}

    return Clock()


def _utilisation(model, tokens_per_s: float, length: int, checkpointing: bool, card: dict) -> dict:
    """Model FLOP/s, and MFU and HFU against the device's data-sheet bf16 peak where it is known."""
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops, hardware = flops_per_token(model.config, length, lora, checkpointing)
    peak = peak_tflops(card["device"])
    return {"lora_params": lora, "model_tflops": round(tokens_per_s * flops / 1e12, 2), "datasheet_tflops": peak,
            "mfu": round(tokens_per_s * flops / (peak * 1e12), 4) if peak else None,
            "hfu": round(tokens_per_s * hardware / (peak * 1e12), 4) if peak else None}


def _trials(measure, record: _Record):
    """A search along one axis, each trial saved as it ends; an error other than running out of memory stops it."""

    def search(axis: str, fixed: int, start: int, step: int, limit: int) -> dict:
        other = "batch" if axis == "length" else "length"
        found = {"at": fixed, "limit": limit, "trials": []}

        def fits(n: int) -> bool:
            outcome = measure(*((n, fixed) if axis == "length" else (fixed, n)))
            found["trials"].append({axis: n, **{k: outcome.get(k) for k in ("fits", "peak_reserved_gb", "error")}})
            peak = f", peak {outcome['peak_reserved_gb']} GB reserved" if outcome.get("peak_reserved_gb") else ""
            record.add(f"{axis} {n} at {other} {fixed}: "
                       + ("fits" if outcome["fits"] else f"does not fit ({outcome['error']})") + peak)
            if not outcome["fits"] and outcome["error"] != OUT_OF_MEMORY:
                raise _Stopped(outcome["error"])
            return outcome["fits"]

        try:
            found["value"] = largest_fitting(fits, start, step, limit)
        except _Stopped as e:
            found.update(value=None, error=str(e))
        what = "longest sequence" if axis == "length" else "largest batch"
        record.add(f"{what} at {other} {fixed}: " + (f"{found['value']:,} (searched up to {limit:,})"
                                                     if found["value"] is not None else f"unknown: {found['error']}"))
        return found

    return search


class _Stopped(Exception):
    pass


def _line(found: dict, card: dict) -> str:
    if not found["fits"]:
        return f"does not fit ({found['error']})"
    memory = (f"; peak {found['peak_reserved_gb']} GB reserved ({found['peak_allocated_gb']} allocated) of "
              f"{card['card_gb']} GB" if found["peak_reserved_gb"] is not None else "")
    mfu = f", MFU {found['mfu']:.1%}" if found.get("mfu") else ""
    return (f"{found['s_per_step']:.2f} s/step, {found['tokens_per_s']:,.0f} tokens/s{mfu} (first step "
            f"{found['first_step_s']:.1f} s){memory}")


def _run_line(total: int, eta: float | None, price_per_hour: float | None, cost: float | None) -> str:
    from kit.training.trainer import duration

    if eta is None:
        return f"the run: {total} steps; no time for them, since its batches do not fit"
    money = (f"; at {price_per_hour:g} an hour about {cost:,.2f}" if cost is not None else
             "; --price-per-hour gives the cost")
    return f"the run: {total} steps, about {duration(eta)} (evaluations and checkpoints add to it){money}"


def advice(cfg: Config, fits: bool, longest: int | None, largest: int | None) -> list[str]:
    """What to change in `cfg` (key=value with the reason), from whether full-length batches `fits`, the `longest`
    sequence at its batch and the `largest` batch at its length (None: not searched)."""
    t, length = cfg.train, cfg.model.max_seq_length
    batch, effective = t.per_device_train_batch_size, t.per_device_train_batch_size * t.gradient_accumulation_steps
    # the largest batch that fits and divides the effective batch, so the accumulation keeps it
    divisor = max((b for b in range(1, (largest or 0) + 1) if effective % b == 0), default=0)
    same = (f"train.per_device_train_batch_size={divisor} "
            f"train.gradient_accumulation_steps={effective // max(divisor, 1)}")
    lines = []
    if not fits:
        if divisor:
            lines.append(f"{same}: fits at length {length}, the same effective batch of {effective}")
        if longest:
            lines.append(f"model.max_seq_length={longest}: fits at batch {batch} (longer rows: data.overlong)")
        if longest == 0 and largest == 0:
            lines.append(f"nothing fits at length {length} even one row at a time: a smaller model "
                         "(qwen3-kit download --plan --gpu-gb <GB>)")
        return lines
    if divisor > batch:
        lines.append(f"{same}: the same effective batch of {effective} in fewer, fuller passes (usually faster)")
    if longest and longest > length:
        lines.append(f"model.max_seq_length={longest} also fits at batch {batch}: room for longer rows")
    return lines
