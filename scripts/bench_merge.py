"""Benchmark the CPU merge against copying the same shards with `cp` + `sync`, with its peak memory, in one run.

    python scripts/bench_merge.py                                  # the 1.7B shape in four 1 GB shards, r=16, 3 pairs
    python scripts/bench_merge.py --shape 0.6B --shard-size 300MB --repeats 5 --folder /data/bench-merge

A random-weight Qwen3 at a published shape (`tests.shapes.build_random_qwen3`, kept in `--folder` for the next
run) and a random LoRA adapter on all seven projections are merged by scripts/gpu_check.py's merge part (the
export's merge, in a fresh process, timed until `os.sync()` returns). Each merge is paired with a copy of the same
shards on the same disk, one after the other, so a change in the machine's load moves both. Disk use: the model plus
two copies of it, each deleted after its turn.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.shapes builds the random models


def merge_in_a_child(**kwargs) -> dict:
    """scripts/gpu_check.py's merge part in a fresh process: its result, or {"error": ...}."""
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--measure", "merge",
                           json.dumps(kwargs)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1].removeprefix("RESULT ")) if lines else \
        {"error": (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]}


def copy_shards(base: Path, target: Path) -> float:
    """Seconds for `cp` of the model's shards into `target` and a `sync`, as a shell would run them."""
    from kit.export.shards import shard_files

    target.mkdir(parents=True)
    start = time.perf_counter()
    subprocess.run(["cp", *map(str, shard_files(base)), str(target)], check=True)
    os.sync()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", default="1.7B", help="a published Qwen3 shape (kit.models.profiles)")
    parser.add_argument("--shard-size", default="1GB", help="max_shard_size of the random model (several shards)")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="merge/copy pairs")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/qwen3-kit-bench-merge"))
    args = parser.parse_args()

    from kit.export.shards import shard_files
    from tests.shapes import build_random_qwen3

    base = build_random_qwen3(args.shape, args.folder / args.shape, max_shard_size=args.shard_size)
    size = sum(p.stat().st_size for p in shard_files(base)) / 1e9
    print(f"{args.shape}: {size:.2f} GB in {len(shard_files(base))} shards on {args.folder}, LoRA r={args.lora_r}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    pairs, copied, merged_dir = [], args.folder / "copy", args.folder / "merged"
    for _ in range(args.repeats):
        for folder in (copied, merged_dir):  # the disk's discards of the last turn's files done before timing
            shutil.rmtree(folder, ignore_errors=True)
        os.sync()
        copy_s = copy_shards(base, copied)
        shutil.rmtree(copied)
        os.sync()
        merged = merge_in_a_child(base=str(base), lora_r=args.lora_r, out=str(merged_dir), check=False)
        if "error" in merged:
            raise SystemExit(f"the merge failed: {merged['error']}")
        pairs.append((merged, copy_s))
        print(f"merge {merged['merge_s']:6.1f} s (user {merged['user_s']} s, system {merged['system_s']} s)   "
              f"cp + sync {copy_s:6.1f} s   ratio {merged['merge_s'] / copy_s:.2f}   "
              f"peak RSS {merged['peak_rss_merge_gb']:.2f} GB (after imports {merged['rss_after_imports_gb']:.2f})")
    last = pairs[-1][0]
    bound = last["rss_after_imports_gb"] + last["largest_tensor_gb"] + last["adapter_gb"]
    print(f"median ratio merge / (cp + sync): {statistics.median(m['merge_s'] / c for m, c in pairs):.2f}; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    print(f"peak RSS {max(m['peak_rss_merge_gb'] for m, _ in pairs):.2f} GB against imports + largest tensor "
          f"({last['largest_tensor_gb']:.2f} GB) + adapter ({last['adapter_gb']:.2f} GB) = {bound:.2f} GB")
    shutil.rmtree(merged_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
