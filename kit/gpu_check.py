"""Everything that needs a GPU, as parts that save their results as they finish, and one report of them all.

    run_parts(Path("gpu-results"), default_parts())      # on the GPU machine: scripts/gpu_check.py
    write_report(Path("gpu-results"))                     # report.json and report.md from whatever parts are saved

Parts: `env` (the device, driver, versions, a measured bf16 matmul peak), `padding` (the pad tokens of batches of
the real mix: what packing saves), `tests` (tests/gpu), `bench:<shape>`
(unsloth against hf: speed, memory, MFU, with the longest sequence under a memory cap at the large shapes),
`grpo:<shape>` (a few steps of the kit's GRPO: step time, generation speed, peak memory) and `merge:<shape>` (the
CPU merge's peak RSS). A part's result is saved in `<out>/<part>.json` when it ends (a bench
after each backend), so a run cut short continues where it stopped: the device tool allows 10 minutes a call.
Without a GPU the same code runs at the tiny shape with the hf backend: the rehearsal the test suite makes.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kit.evaluation.markdown import cell, markdown_table
from kit.files import write_atomic
from kit.paths import PROJECT_ROOT
from kit.perf import run_isolated

# Most telling first; the rehearsal (no GPU) runs the same code at the tiny shape, with hf only.
GPU_PARTS = ["env", "padding", "tests", "bench:8B", "bench:14B", "merge:14B", "bench:0.6B", "grpo:0.6B"]
CPU_PARTS = ["env", "padding", "tests", "bench:tiny", "merge:tiny", "grpo:tiny"]
SEARCH_SHAPES = ("8B", "14B", "tiny")  # where the longest sequence under the cap is searched (tiny: no cap, the path)
CHILD_TIMEOUT_S = 900


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def default_parts() -> list[str]:
    return GPU_PARTS if on_gpu() else CPU_PARTS


def _saved(out: Path, part: str) -> dict | None:
    path = out / f"{part.replace(':', '-')}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _save(out: Path, part: str, result: dict) -> None:
    write_atomic(out / f"{part.replace(':', '-')}.json", json.dumps(result, indent=1))


def run_parts(out: Path, parts: list[str], *, models: Path, stop_after_s: float = float("inf"), **bench) -> list[str]:
    """Run each part not yet saved in `out`, in order; after `stop_after_s` seconds start no further part (the first
    pending one always runs, so every call makes progress). Returns the parts still to do. `bench` goes to each bench
    part (seq, steps, cap_gib, max_seq)."""
    out.mkdir(parents=True, exist_ok=True)
    started, left, ran = time.monotonic(), [], False
    for part in parts:
        saved = _saved(out, part)
        if saved and saved.get("done"):
            continue
        if ran and time.monotonic() - started > stop_after_s:
            left.append(part)
            continue
        ran = True
        kind, _, shape = part.partition(":")
        print(f"[gpu_check] {part} ...", flush=True)
        if kind == "env":
            _save(out, part, {"done": True, **environment()})
        elif kind == "padding":
            _save(out, part, {"done": True, **padding_waste(bench.get("seq", 2048))})
        elif kind == "tests":
            _save(out, part, {"done": True, **gpu_tests(models)})
        elif kind == "bench":
            bench_shape(out, part, shape_dir(models, shape), shape, saved or {}, **bench)
        elif kind == "merge":
            _save(out, part, {"done": True, **merge_shape(models, shape)})
        elif kind == "grpo":
            _save(out, part, {"done": True, **grpo_shape(models, shape)})
        else:
            raise ValueError(f"unknown part '{part}'; parts are env, padding, tests, bench:<shape>, grpo:<shape>, "
                             "merge:<shape>")
    return left


def environment() -> dict:
    """The machine, as the report opens with it."""
    from importlib.metadata import PackageNotFoundError, version

    import torch

    from kit.perf import matmul_tflops, peak_tflops

    device = torch.cuda.get_device_name(0) if on_gpu() else platform.processor() or "cpu"
    smi = shutil.which("nvidia-smi")
    driver = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                            text=True).stdout.strip() if smi else None
    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "bitsandbytes", "unsloth", "unsloth_zoo", "triton"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"device": device, "driver": driver, "cuda": torch.version.cuda, "python": platform.python_version(),
            "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if on_gpu() else None,
            "datasheet_bf16_tflops": peak_tflops(device),
            "measured_bf16_matmul_tflops": float(f"{matmul_tflops():.3g}"),
            "versions": versions, "date": time.strftime("%Y-%m-%d %H:%M")}


def padding_waste(seq: int, batch: int = 2) -> dict:
    """Share of pad tokens in batches of the real mix (sample data, the tiny tokenizer), padded vs packed."""
    from kit.config import load_config
    from kit.data import prepare_data
    from kit.data.report import padding_share
    from kit.training.backends import load_tokenizer

    cfg = load_config(PROJECT_ROOT / "configs" / "smoke.yaml", [f"model.max_seq_length={seq}"])
    lengths = [len(ids) for ids in prepare_data(cfg, load_tokenizer(cfg), progress=False).train["input_ids"]]
    return {"seq": seq, "batch": batch, "padded": round(padding_share(lengths, batch, packed=False, seq=seq), 4),
            "packed_bfd": round(padding_share(lengths, batch, packed=True, seq=seq), 4), "padding_free": 0.0}


def gpu_tests(models: Path) -> dict:
    """tests/gpu in a fresh pytest process: counts, failures and the end of its output."""
    junit = models / "gpu-tests.xml"
    models.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p", "no:cacheprovider",
                           f"--junitxml={junit}"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    counts, failed = {}, []
    if junit.is_file():
        import xml.etree.ElementTree as ET

        suite = ET.parse(junit).getroot().find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [case.get("name") for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
    return {"exit_code": done.returncode, **counts, "failed": failed, "seconds": round(time.perf_counter() - started),
            "output_tail": (done.stdout + done.stderr)[-4000:]}


def shape_dir(models: Path, shape: str) -> Path:
    """A random-weight Qwen3 of `shape` in `models`, built once; other shapes' folders go first (disk is scarce:
    14B is 30 GB and its merge as much again). The tiny shape gets small shards, so its merge spans several."""
    from kit.models.tiny import build_random_qwen3

    folder = models / f"qwen3-{shape}"
    for other in models.glob("qwen3-*"):
        if other != folder:
            shutil.rmtree(other, ignore_errors=True)
    return build_random_qwen3(shape, folder, max_shard_size="2MB" if shape == "tiny" else "5GB")


def bench_shape(out: Path, part: str, folder: Path, shape: str, saved: dict, *, seq: int = 2048, steps: int = 8,
                cap_gib: float = 24, max_seq: int = 32768) -> None:
    """Each backend in its own process, saved as soon as it ends; unsloth is recorded as skipped without a GPU."""
    results = saved.get("results", {})
    backends = ["unsloth", "hf"] if on_gpu() else ["hf"]
    search = cap_gib if shape in SEARCH_SHAPES else 0
    for backend in backends:
        if backend in results:
            continue
        print(f"[gpu_check]   {shape} {backend}", flush=True)
        results[backend] = run_isolated("training", timeout=CHILD_TIMEOUT_S, model_dir=str(folder), backend=backend,
                                        shape=shape, seq=seq if on_gpu() else min(seq, 256), steps=steps,
                                        warmup=min(2, steps - 1), cap_gib=search,
                                        max_seq=max_seq if on_gpu() else 512)
        _save(out, part, {"done": False, "results": results})
    skipped = {} if on_gpu() else {"unsloth": "needs a CUDA GPU"}
    _save(out, part, {"done": True, "results": results, "skipped": skipped})


def grpo_shape(models: Path, shape: str) -> dict:
    """A few GRPO steps at `shape` through unsloth (hf without a GPU): 8 completions of up to 256 tokens a step on a
    GPU, 4 of 32 for two steps in the rehearsal."""
    folder = shape_dir(models, shape)
    settings = dict(backend="unsloth", completion=256, generations=8) if on_gpu() else \
        dict(backend="hf", completion=32, generations=4, steps=2)
    return run_isolated("grpo", timeout=CHILD_TIMEOUT_S, model_dir=str(folder), shape=shape, **settings)


def merge_shape(models: Path, shape: str) -> dict:
    """The streamed merge at `shape`, its output on the disk with room for it (else /dev/shm, RAM-backed)."""
    folder = shape_dir(models, shape)
    size = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    target = models / "merged"
    if shutil.disk_usage(models).free < 1.1 * size and Path("/dev/shm").is_dir():
        target = Path("/dev/shm/qwen3-kit-merged")
    shutil.rmtree(target, ignore_errors=True)
    try:
        return {"output": str(target), **run_isolated("merge", timeout=CHILD_TIMEOUT_S, base=str(folder),
                                                      out=str(target))}
    finally:
        shutil.rmtree(target, ignore_errors=True)


def write_report(out: Path, command: str = "") -> str:
    """report.json (every saved part) and report.md (the tables) in `out`; returns the markdown."""
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "report"}
    env = parts.get("env", {})
    lines = [f"# GPU check: {env.get('device', '?')}", "",
             f"`{command}` on {env.get('date', '?')}; driver {env.get('driver')}, CUDA {env.get('cuda')}, "
             f"Python {env.get('python')}, {json.dumps(env.get('versions', {}))}.",
             f"bf16 peak: data sheet {env.get('datasheet_bf16_tflops')} TFLOP/s, measured matmul "
             f"{env.get('measured_bf16_matmul_tflops')} TFLOP/s.", ""]
    if "padding" in parts:
        p = parts["padding"]
        lines += [f"Pad tokens in batches of {p['batch']} from the real mix (sample data, seq {p['seq']}): padded "
                  f"{p['padded']:.1%}, packed (best-fit decreasing) {p['packed_bfd']:.1%}, padding-free 0%.", ""]
    if "tests" in parts:
        t = parts["tests"]
        lines += [f"tests/gpu: {t.get('tests', 0)} run, {t.get('failures', 0)} failed, {t.get('errors', 0)} errors, "
                  f"{t.get('skipped', 0)} skipped in {t.get('seconds')} s" +
                  (f"; failing: {', '.join(t['failed'])}" if t.get("failed") else ""), ""]
    benches = [r for name, p in parts.items() if name.startswith("bench-") for r in p.get("results", {}).values()]
    if benches:
        lines += [training_table(benches), ""]
    grpos = [p for name, p in parts.items() if name.startswith("grpo-")]
    if grpos:
        lines += [grpo_table(grpos), ""]
    merges = [p for name, p in parts.items() if name.startswith("merge-")]
    if merges:
        lines += [merge_table(merges), ""]
    markdown = "\n".join(lines)
    (out / "report.md").write_text(markdown)
    (out / "report.json").write_text(json.dumps({"command": command, **parts}, indent=1))
    return markdown


def training_table(results: list[dict]) -> str:
    """Markdown: one row per (shape, backend), then unsloth against hf for each shape that has both."""
    header = ["shape", "backend", "tokens/s", "peak reserved GB", "peak allocated GB", "kit.models.memory estimate GB", "MFU",
              "HFU", "MFU of measured matmul", "first step s", "longest seq under cap"]
    rows, pairs = [], {}
    for r in results:
        if "error" in r:
            rows.append([r.get("shape"), r.get("backend"), f"failed: {r['error']}"] + [""] * 8)
            continue
        pairs.setdefault(r["shape"], {})[r["backend"]] = r
        longest = f"{r['longest_seq']:,} ({cell(r['cap_gib'])} GiB)" if "longest_seq" in r else "-"
        rows.append([r["shape"], r["backend"], f"{r['tokens_per_s']:,.0f}", cell(r["peak_reserved_gb"]),
                     cell(r["peak_allocated_gb"]), cell(r["estimate_gb"]), cell(r["mfu"], ".1%"),
                     cell(r["hfu"], ".1%"), f"{r['mfu_of_matmul']:.1%}", r["first_step_s"], longest])
    lines = [markdown_table(header, rows)]
    for shape, pair in pairs.items():
        if {"unsloth", "hf"} <= pair.keys():
            u, h = pair["unsloth"], pair["hf"]
            memory = (f", peak reserved {u['peak_reserved_gb'] / h['peak_reserved_gb']:.2f}x"
                      if u["peak_reserved_gb"] and h["peak_reserved_gb"] else "")
            speed = u["tokens_per_s"] / h["tokens_per_s"]
            lines.append(f"\n{shape}: unsloth against hf: tokens/s {speed:.2f}x{memory}")
    return "\n".join(lines)


def grpo_table(results: list[dict]) -> str:
    """Markdown: GRPO steps through the kit, one row per shape."""
    header = ["shape", "backend", "generation", "completions x max tokens", "step s",
              "completion tokens/s (whole step)", "peak reserved GB", "kit.models.memory estimate GB", "rewards logged"]
    rows = [[r.get("shape"), r.get("backend"), f"failed: {r['error']}"] + [""] * 6 if "error" in r else
            [r["shape"], r["backend"], r["generation"], f"{r['completions_per_step']} x {r['max_completion_length']}",
             r["step_s"], r["completion_tokens_per_s"], cell(r["peak_reserved_gb"]), cell(r["estimate_gb"]),
             ", ".join(r["rewards_logged"])] for r in results]
    return markdown_table(header, rows)


def merge_table(results: list[dict]) -> str:
    """Markdown: the streamed merge's size, time and peak resident memory."""
    header = ["base", "shards", "largest shard GB", "model GB", "merge s", "RSS after imports GB", "peak RSS merge GB",
              "peak RSS with check GB", "CUDA used"]
    keys = ["shards", "largest_shard_gb", "model_gb", "merge_s", "rss_after_imports_gb", "peak_rss_merge_gb",
            "peak_rss_with_check_gb", "cuda_used"]
    rows = [[Path(r.get("base", "?")).name] + ([f"failed: {r['error']}"] + [""] * 7 if "error" in r else
                                                [r[k] for k in keys]) for r in results]
    return markdown_table(header, rows)
