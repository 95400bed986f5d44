"""Training speed and memory: unsloth against plain transformers + PEFT, on the same token batches.

    python scripts/bench.py                                   # GPU: 0.6B 4B 8B 14B shapes, both backends
    python scripts/bench.py --shapes 8B --max-seq-search      # + the longest sequence under a 24 GB cap
    python scripts/bench.py --shapes tiny --steps 4           # CPU: the tiny model, hf only (what CI runs)

Each (shape, backend) trains in a fresh process: a random-weight Qwen3 built from the published config and
quantized to 4-bit on load (no download), LoRA r=32 on all seven projections, sequence 2048, batch 2 x accumulation
4, gradient checkpointing, through the kit's own trainer. Reported: tokens/s (median over steps after warm-up),
peak GPU memory, time to the first step, model FLOPs utilisation against the GPU's bf16 peak (6N + attention per
token), and optionally the longest sequence that fits a memory cap. Also the padding waste of batches built from
the real mix, with and without packing. JSON and a markdown table, with the GPU name, versions and the command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "A800": 312.0, "L40S": 362.0,
                    "RTX 4090": 165.2, "RTX 3090": 71.0}  # dense bf16 tensor-core peaks, vendor data sheets


def _peak_tflops(gpu: str) -> float | None:
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in gpu), None)


def flops_per_token(config, seq: int) -> float:
    """Training FLOPs per token: 6 x non-embedding parameters + 12 x layers x hidden x seq (attention)."""
    from kit.memory import QWEN3_VOCAB

    hidden, layers = config.hidden_size, config.num_hidden_layers
    heads, kv, head_dim, inter = (config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                                  config.intermediate_size)
    per_layer = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter
    non_embedding = layers * per_layer + (0 if config.tie_word_embeddings else QWEN3_VOCAB * hidden)
    return 6 * non_embedding + 12 * layers * hidden * seq


def child(args) -> None:
    """One backend, one shape, in this process; prints one JSON line."""
    from kit.backends import activate_backend

    backend = activate_backend(args.backend)  # unsloth first, before transformers
    import torch
    from datasets import Dataset
    from transformers import AutoConfig, TrainerCallback

    from kit.backends import load_for_training
    from kit.config import load_config
    from kit.train import build_trainer

    started = time.perf_counter()
    on_gpu = torch.cuda.is_available()
    if on_gpu and args.cap_gb:
        torch.cuda.set_per_process_memory_fraction(args.cap_gb * 1e9 / torch.cuda.get_device_properties(0).total_memory)
    cfg = load_config(ROOT / "configs" / "smoke.yaml", [
        f"model.name={args.model_dir}", "model.source=local", f"model.max_seq_length={args.seq}",
        f"train.backend={backend}", f"lora.r={args.lora_r}", f"lora.alpha={args.lora_r}",
        f"train.per_device_train_batch_size={args.batch}", f"train.gradient_accumulation_steps={args.accum}",
        f"train.max_steps={args.steps}", "train.gradient_checkpointing=true", "train.logging_steps=1",
        "train.save_steps=100000", "train.warmup_steps=0", "tracking.wandb=disabled"])
    model, tokenizer = load_for_training(cfg, backend)
    generator = torch.Generator().manual_seed(0)  # the same token batches for every backend
    rows = args.steps * args.accum * args.batch
    ids = torch.randint(100, min(len(tokenizer), 150000), (rows, args.seq), generator=generator).tolist()
    data = Dataset.from_dict({"input_ids": ids, "labels": ids})
    step_times: list[float] = []

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *a, **k):
            if on_gpu:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if on_gpu:
                torch.cuda.synchronize()
            step_times.append(time.perf_counter() - self.t)
            if len(step_times) == 1:
                self.first = time.perf_counter() - started

    timer = StepTimer()
    with tempfile.TemporaryDirectory() as out:
        trainer = build_trainer(cfg, model, tokenizer, data, None, Path(out), progress=False, callbacks=[timer])
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    tokens = args.batch * args.accum * args.seq
    warm = step_times[args.warmup:] or step_times
    tps = tokens / statistics.median(warm)
    gpu = torch.cuda.get_device_name(0) if on_gpu else "cpu"
    config = AutoConfig.from_pretrained(args.model_dir)
    peak = _peak_tflops(gpu)
    result = {
        "shape": args.shape, "backend": backend, "gpu": gpu, "seq": args.seq, "batch": args.batch,
        "accum": args.accum, "lora_r": args.lora_r, "steps": len(step_times),
        "tokens_per_s": round(tps, 1), "first_step_s": round(timer.first, 1),
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if on_gpu else None,
        "mfu": round(tps * flops_per_token(config, args.seq) / (peak * 1e12), 4) if peak else None,
    }
    print("RESULT " + json.dumps(result), flush=True)


def run_child(shape: str, backend: str, model_dir: Path, args, seq: int, cap_gb: float = 0) -> dict | None:
    cmd = [sys.executable, __file__, "--child", "--shape", shape, "--backend", backend, "--model-dir", str(model_dir),
           "--seq", str(seq), "--batch", str(args.batch), "--accum", str(args.accum), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--lora-r", str(args.lora_r), "--cap-gb", str(cap_gb)]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        print(f"  {shape} {backend} seq {seq}: failed ({(out.stderr or out.stdout).strip().splitlines()[-1][:200]})")
        return None
    return json.loads(lines[-1].removeprefix("RESULT "))


def longest_sequence(shape: str, backend: str, model_dir: Path, args) -> int:
    """Binary search, 1024-token steps, for the longest sequence (batch 1) that trains under the cap."""
    lo, hi = 0, args.max_seq // 1024
    while lo < hi:
        mid = (lo + hi + 1) // 2
        small = argparse.Namespace(**{**vars(args), "batch": 1, "accum": 1, "steps": 2, "warmup": 1})
        if run_child(shape, backend, model_dir, small, mid * 1024, cap_gb=args.cap_gb):
            lo = mid
        else:
            hi = mid - 1
    return lo * 1024


def padding_waste(batch: int, seq: int) -> dict:
    """Share of pad tokens in batches of the real mix (sample data, the kit's tokenizer), padded vs packed."""
    from kit.backends import load_tokenizer
    from kit.config import load_config
    from kit.data import prepare_data
    from kit.data.report import padding_share

    cfg = load_config(ROOT / "configs" / "smoke.yaml", [f"model.max_seq_length={seq}"])
    prepared = prepare_data(cfg, load_tokenizer(cfg), progress=False)
    lengths = [len(ids) for ids in prepared.train["input_ids"]]
    return {"padded_batches": round(padding_share(lengths, batch, packed=False, seq=seq), 4),
            "packed_bfd": round(padding_share(lengths, batch, packed=True, seq=seq), 4), "padding_free": 0.0}


def versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "transformers", "trl", "peft", "bitsandbytes", "unsloth")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=None, help="0.6B 4B 8B 14B (GPU) or tiny (CPU)")
    parser.add_argument("--backends", nargs="+", default=None, help="unsloth hf (GPU) or hf (CPU)")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--accum", type=int, default=4)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--lora-r", type=int, default=32)
    parser.add_argument("--max-seq-search", action="store_true", help="longest sequence under --cap-gb")
    parser.add_argument("--cap-gb", type=float, default=24.0, help="memory cap for the search (an RTX 4090)")
    parser.add_argument("--max-seq", type=int, default=32768)
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--md", default="", help="write a markdown table here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    import torch

    from kit.smoke import build_random_qwen3, build_tiny_model

    on_gpu = torch.cuda.is_available()
    shapes = args.shapes or (["0.6B", "4B", "8B", "14B"] if on_gpu else ["tiny"])
    backends = args.backends or (["unsloth", "hf"] if on_gpu else ["hf"])
    command = " ".join(["python", "scripts/bench.py", *sys.argv[1:]])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for shape in shapes:
            folder = build_tiny_model() if shape == "tiny" else build_random_qwen3(shape, Path(tmp) / shape)
            for backend in backends:
                result = run_child(shape, backend, folder, args, args.seq)
                if result is None:
                    continue
                if args.max_seq_search and on_gpu:
                    result["longest_seq_under_cap"] = longest_sequence(shape, backend, folder, args)
                    result["cap_gb"] = args.cap_gb
                results.append(result)
                print(json.dumps(result))
    waste = padding_waste(args.batch, args.seq)
    report = {"command": command, "versions": versions(), "results": results, "padding_waste": waste}
    table = ["| shape | backend | GPU | tokens/s | peak GB | first step s | MFU | longest seq under cap |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        table.append(f"| {r['shape']} | {r['backend']} | {r['gpu']} | {r['tokens_per_s']} | {r['peak_gpu_gb']} | "
                     f"{r['first_step_s']} | {r['mfu']} | {r.get('longest_seq_under_cap', '-')} |")
    table.append(f"\npadding waste (share of pad tokens, batch {args.batch}, real mix): padded "
                 f"{waste['padded_batches']:.1%}, packed (bfd) {waste['packed_bfd']:.1%}, padding-free 0%")
    table.append(f"\n`{command}`")
    print("\n".join(table))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    if args.md:
        Path(args.md).write_text("\n".join(table) + "\n")


if __name__ == "__main__":
    main()
