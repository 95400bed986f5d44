"""Everything that needs a GPU, as parts that each run in fresh processes and are saved (and copied) when they end.

    python scripts/gpu_check.py --out .gpu-work/results --copy-to "$OUT"     # on the GPU machine, each call
    python scripts/gpu_check.py --out /tmp/rehearsal                          # no GPU: the tiny-shape rehearsal
    python scripts/gpu_check.py --out /tmp/cpu --parts padding merge:14B      # the work that needs no GPU

Parts, in the order the first call should answer (docs/benchmarks.md: the command sequence for a 15-minute lease,
and the time each part is expected to take on an H200):
- preflight: nvidia-smi, disk, memory, `pip check`, a timed `import unsloth`, the versions, a bf16 matmul's TFLOP/s;
- probe:<shape>:<backend>: `qwen3-kit probe` on a random-weight Qwen3 of that shape (tests/shapes.py) with the smoke
  config's data at seq 2048, batch 2 x 4, LoRA r=32 on all projections, 4-bit, checkpointing: tokens/s, peak memory,
  the first step, MFU. What is measured is what users run;
- search:<shape>:<backend>: the same probe with its searches (the longest sequence, the largest batch) under a
  24 GiB cap, as on an RTX 4090;
- tests (tests/gpu), grpo:<shape> (a few steps of the kit's GRPO through unsloth);
- CPU only, never on a lease: padding (the pad tokens of the real mix, padded and packed) and merge:<shape> (the
  streamed merge's peak memory).

Each part has its own time limit, under the 10 minutes a device command may run, and a call starts no part that its
--budget cannot fit. A part that failed, timed out or never started runs again on the next call; one that is done is
kept. The parent never imports torch (no GPU memory held while a child measures), and every child gets the same
allocator settings. Without a GPU the same parts run at the tiny shape with the hf backend (tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/shapes.py builds the random models

GPU_PARTS = ["preflight", "probe:8B:unsloth", "probe:8B:hf", "search:8B:unsloth", "search:8B:hf",
             "probe:14B:unsloth", "probe:14B:hf", "tests", "grpo:0.6B"]
CPU_PARTS = ["preflight", "probe:tiny:hf", "search:tiny:hf", "tests", "grpo:tiny", "padding", "merge:tiny"]
CPU_ONLY = ("padding", "merge")
# Seconds a part may take (each under the device's 10-minute command) and is expected to take on an H200 (unmeasured:
# docs/benchmarks.md says how they were estimated); a shape's first part also builds it (BUILD_S).
LIMIT_S = {"preflight": 180, "probe": 480, "search": 540, "tests": 570, "grpo": 480, "padding": 600, "merge": 3600}
EXPECTED_S = {"preflight": 60, "probe": 150, "search": 240, "tests": 420, "grpo": 180, "padding": 60, "merge": 900}
BUILD_S = {"8B": 90, "14B": 150, "0.6B": 15}
# Unsloth sets this when it is imported, unless it is set: the hf baseline gets the same allocator.
CHILD_ENV = {"PYTORCH_ALLOC_CONF": "expandable_segments:True", "PYTHONUNBUFFERED": "1"}


def has_gpu() -> bool:
    """Whether nvidia-smi sees a GPU: asked without torch, so the parent never holds GPU memory."""
    smi = shutil.which("nvidia-smi")
    return bool(smi) and subprocess.run([smi, "-L"], capture_output=True, text=True).stdout.startswith("GPU")


def run_parts(out: Path, parts: list[str], *, models: Path, budget_s: float, copy_to: Path | None, gpu: bool,
              **probe) -> list[str]:
    """Run each part of `parts` not yet done in `out`, in order, each saved as <part>.json when it ends and `out`
    copied to `copy_to`; after the first, a part starts only if its expected time fits what is left of `budget_s`.
    Returns the parts still to do."""
    out.mkdir(parents=True, exist_ok=True)
    started, left, ran, waiting = time.monotonic(), [], False, False
    for part in parts:
        if _load(out, part).get("status") == "done":
            continue
        kind, _, rest = part.partition(":")
        shape = rest.split(":")[0]
        need = EXPECTED_S[kind] + (BUILD_S.get(shape, 0) if not (models / f"qwen3-{shape}").is_dir() else 0)
        remaining = budget_s - (time.monotonic() - started)
        waiting = waiting or (ran and need > remaining)  # in order: once one waits, the rest wait behind it
        if waiting:
            left.append(part)
            continue
        ran = True
        print(f"[gpu_check] {part} ...", flush=True)
        deadline = time.monotonic() + max(1.0, min(LIMIT_S[kind], remaining))
        begun, log = time.monotonic(), out / f"{part.replace(':', '-')}.log"
        log.write_text("")
        try:
            result = PARTS[kind](part, out, models, deadline, log, gpu=gpu, **probe)
            status = "done"
        except PartFailed as e:
            status, result = e.status, {"error": e.reason, **e.result}
        _save(out, part, {"part": part, "status": status, "seconds": round(time.monotonic() - begun), **result})
        print(f"[gpu_check] {part}: {status} in {time.monotonic() - begun:.0f} s"
              + (f" ({result['error']})" if status != "done" else ""), flush=True)
        if status != "done":
            left.append(part)
        write_report(out)
        if copy_to:
            shutil.copytree(out, copy_to, dirs_exist_ok=True)
    return left


class PartFailed(Exception):
    def __init__(self, status: str, reason: str, result: dict | None = None):
        super().__init__(reason)
        self.status, self.reason, self.result = status, reason, result or {}


def _load(out: Path, part: str) -> dict:
    path = out / f"{part.replace(':', '-')}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _save(out: Path, part: str, result: dict) -> None:
    from kit.files import write_atomic

    write_atomic(out / f"{part.replace(':', '-')}.json", json.dumps(result, indent=1))


def child(args: list[str], deadline: float, log: Path, cwd: Path = ROOT) -> dict:
    """Run `args` (argv after the Python interpreter) until `deadline`, its output appended to `log`; the last
    `RESULT <json>` line it printed, or {}. Raises PartFailed when it fails or runs out of time."""
    with open(log, "a") as handle:
        handle.write(f"$ {' '.join(args)}\n")
        handle.flush()
        begin = handle.tell()
        # its own process group: at the limit every process it started goes too (tests/gpu's training runs hold GPU
        # memory), so nothing is left running into the next part
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                                env=os.environ | CHILD_ENV, start_new_session=True)
        try:
            returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise PartFailed("timed out", f"{args[0]} ran past the part's limit") from None
    lines = log.read_bytes()[begin:].decode(errors="replace").splitlines()
    results = [line for line in lines if line.startswith("RESULT ")]
    if returncode != 0:
        why = next((line for line in reversed(lines) if line.strip()), "")
        raise PartFailed("failed", f"exit status {returncode}: {why[:300]}")
    return json.loads(results[-1].removeprefix("RESULT ")) if results else {}


def measure(name: str, **kwargs) -> None:
    """In a child: one of MEASUREMENTS, its result printed as `RESULT <json>`."""
    print("RESULT " + json.dumps(MEASUREMENTS[name](**kwargs)), flush=True)


def shape_dir(models: Path, shape: str, deadline: float, log: Path, shard: str = "5GB", copies: float = 1) -> str:
    """The model a part runs on: the tiny default by name, a published shape built once into `models` (other shapes'
    folders go first: 14B is 29.5 GB on a 64 GiB disk) after checking the disk holds `copies` of it."""
    if shape == "tiny" and shard == "5GB":
        return "tiny"
    from kit.models.profiles import find

    folder = models / f"qwen3-{shape}"
    if (folder / "config.json").is_file():
        return str(folder)
    models.mkdir(parents=True, exist_ok=True)
    for other in models.glob("qwen3-*"):
        shutil.rmtree(other, ignore_errors=True)
    need = copies * (2 * find(shape).params() if shape != "tiny" else 0) / 1e9 + 2
    free = shutil.disk_usage(models).free / 1e9
    if free < need:
        raise PartFailed("failed", f"{free:.1f} GB free on the disk of {models}, {need:.1f} GB needed for {shape}")
    child([__file__, "--measure", "build", json.dumps({"shape": shape, "folder": str(folder), "shard": shard})],
          deadline, log)
    return str(folder)


def part_probe(part: str, out: Path, models: Path, deadline: float, log: Path, *, gpu: bool, seq: int, steps: int,
               cap_gib: float) -> dict:
    """`qwen3-kit probe` at a shape; its probe.json is the result, however far it got."""
    kind, shape, backend = part.split(":")
    model = shape_dir(models, shape, deadline, log)
    name = part.replace(":", "-")
    settings = [f"model.name={model}", "model.source=local", f"model.max_seq_length={seq if gpu else min(seq, 256)}",
                "lora.r=32", "lora.lora_alpha=32", f"train.backend={backend}", "train.per_device_train_batch_size=2",
                "train.gradient_accumulation_steps=4", "train.gradient_checkpointing=true", "train.optim=auto",
                f"train.output_dir={out / 'runs'}", f"train.run_name={name}"]
    flags = ["--steps", str(steps)] + (["--cap-gib", str(cap_gib)] if kind == "search" else ["--no-search"])
    found = out / "runs" / name / "probe.json"
    found.unlink(missing_ok=True)
    try:
        child(["-m", "kit.cli", "probe", "configs/smoke.yaml", *settings, *flags], deadline, log)
    except PartFailed as e:
        e.result = json.loads(found.read_text()) if found.is_file() else {}
        raise
    return json.loads(found.read_text())


def part_tests(part: str, out: Path, models: Path, deadline: float, log: Path, **_) -> dict:
    """tests/gpu in a fresh pytest process: the counts and the failures."""
    import xml.etree.ElementTree as ET

    junit = out / "gpu-tests.xml"
    junit.unlink(missing_ok=True)
    error = None
    try:
        child(["-m", "pytest", "-m", "gpu", "tests/gpu", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"],
              deadline, log)
    except PartFailed as e:
        error = e
    counts, failed = {}, []
    if junit.is_file():
        suite = ET.parse(junit).getroot().find("testsuite")
        counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        failed = [case.get("name") for case in suite.iter("testcase")
                  if case.find("failure") is not None or case.find("error") is not None]
    if error:
        error.result = {**counts, "failed": failed}
        raise error
    return {**counts, "failed": failed}


def part_measured(part: str, out: Path, models: Path, deadline: float, log: Path, *, gpu: bool, seq: int,
                  **_) -> dict:
    """grpo:<shape>, merge:<shape>, padding and preflight: a measurement of this script in a child."""
    kind, _, shape = part.partition(":")
    if kind in CPU_ONLY and gpu:
        raise PartFailed("failed", f"{kind} needs no GPU: run it on the CPU (docs/benchmarks.md), not on a lease")
    kwargs = {"gpu": gpu} if kind in ("preflight", "grpo") else {"seq": seq} if kind == "padding" else {}
    if kind == "grpo":
        kwargs["model"] = shape_dir(models, shape, deadline, log)
    if kind == "merge":  # the merge writes as much again; the tiny shape in small shards, so it spans several
        kwargs["base"] = shape_dir(models, shape, deadline, log, shard="2MB" if shape == "tiny" else "5GB", copies=2)
    found = child([__file__, "--measure", kind, json.dumps(kwargs)], deadline, log)
    if kind == "preflight":
        found.update(shell_facts())
    return found


def shell_facts() -> dict:
    """What the machine says of itself: nvidia-smi, the disk, the memory, pip's dependency check."""
    commands = {"nvidia_smi": ["nvidia-smi"], "disk": ["df", "-h", str(ROOT), "/tmp"], "memory": ["free", "-g"],
                "pip_check": [sys.executable, "-m", "pip", "check"]}
    facts = {}
    for name, command in commands.items():
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
            facts[name] = (done.stdout + done.stderr).strip()[-3000:]
        except (OSError, subprocess.TimeoutExpired) as e:
            facts[name] = f"{type(e).__name__}: {e}"
    return facts


PARTS = {"preflight": part_measured, "probe": part_probe, "search": part_probe, "tests": part_tests,
         "grpo": part_measured, "padding": part_measured, "merge": part_measured}


# Measurements, each run in a child process (`--measure <name> <json>`).

def preflight(gpu: bool) -> dict:
    """The device, the versions, a timed `import unsloth` (first, as the kit imports it) and a bf16 matmul's speed."""
    from importlib.metadata import PackageNotFoundError, version

    started = time.perf_counter()
    if gpu:
        import unsloth  # noqa: F401
    unsloth_s = time.perf_counter() - started
    import torch

    from kit.training.probe import peak_tflops

    versions = {}
    for package in ("torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "unsloth", "unsloth_zoo",
                    "triton"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    device = torch.cuda.get_device_name(0) if gpu else "cpu"
    return {"device": device, "cuda": torch.version.cuda, "python": sys.version.split()[0],
            "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if gpu else None,
            "import_unsloth_s": round(unsloth_s, 1) if gpu else None, "datasheet_bf16_tflops": peak_tflops(device),
            "matmul_tflops": float(f"{matmul_tflops(gpu):.3g}"), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M")}


def matmul_tflops(gpu: bool, size: int = 8192, repeats: int = 20) -> float:
    """A plain bf16 matmul's speed (smaller on a CPU): the peak this device reaches in practice."""
    import torch

    size, repeats = (size, repeats) if gpu else (512, 3)
    a, b = (torch.randn(size, size, dtype=torch.bfloat16, device="cuda" if gpu else "cpu") for _ in range(2))
    for _ in range(3):
        a @ b
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if gpu:
        torch.cuda.synchronize()
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e12


def build(shape: str, folder: str, shard: str) -> dict:
    from tests.shapes import build_random_qwen3

    started = time.perf_counter()
    build_random_qwen3(shape, folder, max_shard_size=shard)
    return {"shape": shape, "build_s": round(time.perf_counter() - started, 1)}


def grpo(model: str, gpu: bool, steps: int = 4) -> dict:
    """`steps` steps of the kit's own GRPO run (kit.training.reinforce: prompts, rewards, trainer, adapter) on the
    sample problems through unsloth, one problem and 8 completions of up to 256 tokens a step (without a GPU: hf,
    two steps of 4 x 32): the median step after the first, completion tokens/s of whole steps, the peak memory."""
    import statistics
    import tempfile

    from kit.config import load_config
    from kit.training.backends import activate_backend

    backend = activate_backend("unsloth" if gpu else "hf")  # unsloth first, before transformers
    import torch

    from kit.models.memory import grpo_estimate_for
    from kit.training.metrics import read_metrics
    from kit.training.reinforce import generation
    from kit.training.reinforce import grpo as run_grpo

    generations, completion, steps = (8, 256, steps) if gpu else (4, 32, 2)
    timer = _step_timer(gpu)
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config("configs/smoke.yaml", [
            f"model.name={model}", "model.source=local", f"model.max_seq_length={96 + completion}",
            f"train.backend={backend}", f"train.output_dir={out}", "train.run_name=grpo",
            "train.gradient_checkpointing=true", "lora.r=32", "lora.lora_alpha=32", "grpo.start_from=base",
            f"grpo.max_steps={steps}", f"grpo.num_generations={generations}", "grpo.prompts_per_step=1",
            f"grpo.per_device_train_batch_size={generations}", f"grpo.max_completion_length={completion}",
            "grpo.save_steps=100000", "grpo.eval_before_after=false", "tracking.wandb=disabled"])
        result = run_grpo(cfg, progress=False, callbacks=[timer])
        logged = [r for r in read_metrics(result.run_dir) if "reward" in r]
    step_s = statistics.median(timer.times[1:] or timer.times)
    estimate = grpo_estimate_for(cfg, backend)
    return {"backend": backend, "generation": generation(cfg, backend), "steps": len(timer.times),
            "completions_per_step": generations, "max_completion_length": completion, "step_s": round(step_s, 2),
            "completion_tokens_per_s": round(statistics.mean(r["completions/mean_length"] for r in logged)
                                             * generations / step_s, 1),
            "peak_reserved_gb": round(torch.cuda.max_memory_reserved() / 1e9, 2) if gpu else None,
            "estimate_gb": round(estimate.total_gb, 2) if estimate else None,
            "rewards_logged": sorted(k.split("/")[1] for k in logged[-1]
                                     if k.startswith("rewards/") and k.endswith("/mean"))}


def _step_timer(gpu: bool):
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []

        def on_step_begin(self, *args, **kwargs):
            if gpu:
                torch.cuda.synchronize()
            self.t = time.perf_counter()

        def on_step_end(self, *args, **kwargs):
            if gpu:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)

    return StepTimer()


def merge(base: str, lora_r: int = 32, out: str = "", check: bool = True) -> dict:
    """Merge a random LoRA adapter into `base` as `qwen3-kit export` does, on the CPU: its time to the disk
    (os.sync included), CPU seconds, the peak RSS of the merge alone and with its check (`check`), the largest shard,
    tensor and changed tensor beside the adapter's size, and whether CUDA was ever touched."""
    import os
    import resource
    import shutil
    import tempfile

    import torch
    from transformers import AutoTokenizer

    from kit.export.export import check_merge
    from kit.export.merge import merge_lora
    from kit.export.shards import read_header, shard_files
    from tests.shapes import build_random_adapter

    def rss_gb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux reports KiB

    base = Path(base)
    entries = {name: e for shard in shard_files(base) for name, e in read_header(shard)[0].items()}
    with tempfile.TemporaryDirectory(dir=base.parent) as scratch:
        adapter = build_random_adapter(base, Path(scratch) / "adapter", r=lora_r)
        target = Path(out) if out else Path(scratch) / "merged"
        target.mkdir(parents=True, exist_ok=True)
        after_imports, start, cpu = rss_gb(), time.perf_counter(), os.times()
        merged = merge_lora(adapter, base, target)
        os.sync()
        merge_s, merge_rss = time.perf_counter() - start, rss_gb()
        cpu = [b - a for a, b in zip(cpu, os.times(), strict=True)]
        changed = [e for name, e in entries.items() if name.endswith("_proj.weight")]
        result = {"base": base.name, "shards": len(shard_files(base)), "weights_merged": merged,
                  "largest_shard_gb": round(max(p.stat().st_size for p in shard_files(base)) / 1e9, 2),
                  "largest_tensor_gb": round(max(e.end - e.start for e in entries.values()) / 1e9, 3),
                  "largest_changed_gb": round(max(e.end - e.start for e in changed) / 1e9, 3),
                  "adapter_gb": round((adapter / "adapter_model.safetensors").stat().st_size / 1e9, 3),
                  "model_gb": round(sum(p.stat().st_size for p in shard_files(target)) / 1e9, 2),
                  "merge_s": round(merge_s, 1), "user_s": round(cpu[0], 1), "system_s": round(cpu[1], 1),
                  "rss_after_imports_gb": round(after_imports, 2), "peak_rss_merge_gb": round(merge_rss, 2)}
        if check:
            diff, scale = check_merge(adapter, base, target, AutoTokenizer.from_pretrained(adapter))
            result |= {"peak_rss_with_check_gb": round(rss_gb(), 2), "max_logit_diff": round(diff, 5),
                       "logit_scale": round(scale, 3)}
        result["cuda_used"] = torch.cuda.is_initialized()
        if not out:
            shutil.rmtree(target)
    return result


def padding_share(lengths: list[int], batch: int, *, packed: bool = False, seq: int = 0) -> float:
    """Share of pad tokens when rows (in this order) are batched and padded to each batch's longest row; with
    `packed`, rows are first packed best-fit-decreasing into sequences of at most `seq` tokens."""
    import bisect

    if packed:
        free: list[int] = []  # the room left in each pack, sorted
        for n in sorted(lengths, reverse=True):
            i = bisect.bisect_left(free, n)  # the fullest pack this row still fits in
            room = free.pop(i) if i < len(free) else seq
            bisect.insort(free, room - n)
        lengths = [seq - room for room in free]
    padded = total = 0
    for i in range(0, len(lengths), batch):
        chunk = lengths[i:i + batch]
        padded += max(chunk) * len(chunk)
        total += sum(chunk)
    return (padded - total) / padded if padded else 0.0


def padding(seq: int = 2048, batch: int = 2) -> dict:
    """The share of pad tokens in batches of the real mix (sample data, the tiny tokenizer), padded and packed."""
    from kit.config import load_config
    from kit.data import prepare_data
    from kit.training.backends import load_tokenizer

    cfg = load_config(ROOT / "configs" / "smoke.yaml", [f"model.max_seq_length={seq}"])
    lengths = [len(ids) for ids in prepare_data(cfg, load_tokenizer(cfg), progress=False).train["input_ids"]]
    return {"seq": seq, "batch": batch, "padded": round(padding_share(lengths, batch, packed=False, seq=seq), 4),
            "packed_bfd": round(padding_share(lengths, batch, packed=True, seq=seq), 4), "padding_free": 0.0}


MEASUREMENTS = {"preflight": preflight, "build": build, "grpo": grpo, "merge": merge, "padding": padding}


def write_report(out: Path) -> str:
    """report.json (every saved part) and report.md (its tables) in `out`; returns the markdown."""
    from kit.evaluation.markdown import cell, markdown_table

    parts = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.stem != "report"}
    env = parts.get("preflight", {})
    lines = [f"# GPU check: {env.get('device', '?')}", "", f"{env.get('date', '?')}: CUDA {env.get('cuda')}, Python "
             f"{env.get('python')}, {json.dumps(env.get('versions', {}))}; `import unsloth` "
             f"{env.get('import_unsloth_s')} s; bf16 peak: data sheet {env.get('datasheet_bf16_tflops')} TFLOP/s, "
             f"measured matmul {env.get('matmul_tflops')} TFLOP/s.", "",
             markdown_table(["part", "status", "s", "error"], [[name, p["status"], p["seconds"], p.get("error", "")]
                                                               for name, p in parts.items()]), ""]
    rows, speed = [], {}
    for name, p in parts.items():
        if not name.startswith(("probe-", "search-")) or "full_length" not in p:
            continue
        full, data = p["full_length"], p.get("data", {})
        if name.startswith("probe-"):
            speed.setdefault(name.split("-")[1], {})[p["backend"]] = full.get("tokens_per_s")
        matmul = env.get("matmul_tflops")
        rows.append([name, cell(full.get("tokens_per_s"), ",.0f"), cell(data.get("s_per_step"), ".2f"),
                     cell(p.get("first_step_s")), cell(full.get("peak_reserved_gb")),
                     cell(full.get("peak_allocated_gb")), cell(p.get("estimate_gb")), cell(full.get("mfu"), ".1%"),
                     cell(full.get("hfu"), ".1%"),
                     cell(full["model_tflops"] / matmul if full.get("model_tflops") and matmul else None, ".1%"),
                     cell(p.get("longest_seq", {}).get("value"), ","), cell(p.get("largest_batch", {}).get("value"))])
    if rows:
        lines += [markdown_table(["part", "tokens/s at full length", "s/step on the data", "first step s (from start)",
                                  "peak reserved GB", "peak allocated GB", "estimate GB", "MFU", "HFU",
                                  "MFU of measured matmul", "longest seq (cap)", "largest batch (cap)"], rows), ""]
        lines += [f"{shape}: unsloth {pair['unsloth'] / pair['hf']:.2f}x the tokens/s of hf"
                  for shape, pair in speed.items() if pair.get("unsloth") and pair.get("hf")] + [""]
    for name, p in parts.items():
        if name.startswith(("grpo-", "merge-", "padding", "tests")) and p["status"] == "done":
            shown = {k: v for k, v in p.items() if k not in ("part", "status", "seconds")}
            lines.append(f"{name}: {json.dumps(shown)}")
    markdown = "\n".join(lines) + "\n"
    (out / "report.md").write_text(markdown)
    (out / "report.json").write_text(json.dumps(parts, indent=1))
    return markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for <part>.json, <part>.log, report.json and report.md")
    parser.add_argument("--parts", nargs="+", help=f"default with a GPU: {' '.join(GPU_PARTS)}; without one: "
                                                   f"{' '.join(CPU_PARTS)}")
    parser.add_argument("--copy-to", help="copy --out here after each part ($OUT on the device machine)")
    parser.add_argument("--models", default=".gpu-work/models", help="where the random-weight models are built")
    parser.add_argument("--budget", type=float, help="start no part that would end after this many seconds "
                                                     "(default 540 with a GPU: a command runs 10 minutes at most)")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=3, help="the probe's steps (the first warms up)")
    parser.add_argument("--cap-gib", type=float, default=24.0, help="the memory cap of the search parts")
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)  # a child: a measurement and its arguments
    args = parser.parse_args()
    if args.measure:
        return measure(args.measure[0], **json.loads(args.measure[1]))
    if not args.out:
        parser.error("--out is required")
    gpu = has_gpu()
    out = Path(args.out)
    left = run_parts(out, args.parts or (GPU_PARTS if gpu else CPU_PARTS), models=Path(args.models),
                     budget_s=args.budget or (540 if gpu else float("inf")),
                     copy_to=Path(args.copy_to) if args.copy_to else None, gpu=gpu, seq=args.seq, steps=args.steps,
                     cap_gib=args.cap_gib)
    print(write_report(out))
    print(f"still to run: {' '.join(left)} (the same command again)" if left else "all parts done")


if __name__ == "__main__":
    main()
