"""Benchmark data preparation: the kit against the reference recipe's way, on the same rows, in one run.

    python scripts/bench_data.py                       # N = 4000 rows, the real Qwen3 tokenizer from ../shared
    python scripts/bench_data.py --rows 8000 --rss 2000 8000 32000

Rows are written in the real schemas (OpenMathReasoning parquet, FineTome ShareGPT parquet) at realistic lengths:
reasoning traces log-normal around 3,000 tokens (OpenMathReasoning `cot` traces are long), chat turns around 300.
The reference is Unsloth's notebook: per-row `apply_chat_template` for each set, pandas `sample` for the chat
share, `Dataset.from_pandas` + shuffle, then SFTTrainer's own tokenization (timed as its construction). The kit is
`prepare_data` cold (empty cache) and rerun (cached by fingerprint). The limit is the least this job can cost with
this tokenizer: the mix's rows rendered by `apply_chat_template` and tokenized in one batched call without offsets
(`encode_batch_fast`), one after the other, from conversations already in memory. `--rss` measures the kit's
peak RSS in a fresh process for each N: it should stay flat, since sources are streamed and encoded rows go
straight to disk.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QWEN3_TOKENIZER = ROOT.parent / "shared" / "fixtures" / "qwen3-tokenizer"
RATIO = 0.25


def write_rows(folder: Path, n_reasoning: int, n_chat: int, seed: int = 0) -> tuple[Path, Path]:
    """Sample files at realistic lengths, built from the kit's own sample rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    math_rows = pq.read_table(ROOT / "data" / "openmath_sample.parquet").to_pylist()
    chat_rows = [json.loads(line) for line in (ROOT / "data" / "finetome_sample.jsonl").read_text().splitlines()]
    reasoning = []
    for i in range(n_reasoning):
        row = dict(math_rows[i % len(math_rows)])
        body = row["generated_solution"].split("</think>")[0].removeprefix("<think>\n")
        repeats = max(1, int(rng.lognormvariate(3.4, 0.6)))  # ~100 tokens a repeat: median ~3,000 tokens
        think = "\n".join(f"Step {k + 1}. {body}" for k in range(repeats))
        answer = row["generated_solution"].split("</think>\n\n")[1]
        row["generated_solution"] = f"<think>\n{think}\n</think>\n\n{answer}"
        reasoning.append(row)
    chat = []
    for i in range(n_chat):
        row = json.loads(json.dumps(chat_rows[i % len(chat_rows)]))
        for turn in row["conversations"]:
            if turn["from"] == "gpt":
                turn["value"] = " ".join([turn["value"]] * max(1, int(rng.lognormvariate(1.2, 0.5))))
        chat.append(row)
    pq.write_table(pa.Table.from_pylist(reasoning), folder / "cot-00000-of-00001.parquet")
    pq.write_table(pa.Table.from_pylist(chat), folder / "train-00000-of-00001.parquet")
    return folder / "cot-00000-of-00001.parquet", folder / "train-00000-of-00001.parquet"


def kit_config(reasoning: Path, chat: Path, max_len: int):
    from kit.config import load_config

    return load_config(None, [
        "model.name=tiny", "model.source=local", f"model.max_seq_length={max_len}", "data.eval_rows=0",
        f"data.reasoning.path={reasoning}", "data.reasoning.hub=local",
        f"data.chat.path={chat}", "data.chat.hub=local", "data.chat.format=sharegpt", f"data.chat_ratio={RATIO}",
    ])


class Clock:
    """Wall seconds of a block, and CPU seconds (every thread of this process): on a busy machine the CPU time
    still says how much work each way does, when the wall time mostly says how busy the machine was."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_kit(tokenizer, reasoning: Path, chat: Path, max_len: int, cache: Path) -> tuple[Clock, Clock, dict]:
    import datasets  # noqa: F401  (imported before the clock starts, as the reference's imports are)

    from kit.data import prepare_data

    cfg = kit_config(reasoning, chat, max_len)
    with Clock() as cold_clock:
        cold = prepare_data(cfg, tokenizer, cache_dir=cache, progress=False)
    with Clock() as cached_clock:
        again = prepare_data(cfg, tokenizer, cache_dir=cache, progress=False)
    assert again.cached and len(again.train) == len(cold.train)
    return cold_clock, cached_clock, cold.report["mix"]


def run_limit(tokenizer, reasoning: Path, chat: Path, n_chat: int) -> Clock:
    """The job's floor: render the mix's rows (all reasoning rows, `n_chat` chat rows) with the chat template and
    tokenize them in one batched call without offsets. Reading and converting the rows is not timed."""
    import pyarrow.parquet as pq

    from kit.config import SourceConfig
    from kit.data.formats import to_messages

    conversations = [to_messages(row, SourceConfig(format="openmath", path="x"))
                     for row in pq.read_table(reasoning).to_pylist()]
    conversations += [to_messages(row, SourceConfig(format="sharegpt", path="x"))
                      for row in pq.read_table(chat).slice(0, n_chat).to_pylist()]
    with Clock() as clock:
        texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
        tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return clock


def limit_in_a_child(tokenizer_dir: str, reasoning: Path, chat: Path, n_chat: int) -> Clock:
    """`run_limit` in a fresh process: once the kit has encoded a pool in forked processes, Hugging Face tokenizers
    turns its threads off in this one, and the limit would tokenize on one core."""
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}  # which tokenizers set to false
    out = subprocess.run([sys.executable, __file__, "--limit-child", str(reasoning), str(chat), str(n_chat),
                          "--tokenizer", tokenizer_dir], capture_output=True, text=True, check=True, env=env)
    clock = Clock()
    clock.wall, clock.cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return clock


def run_reference(tokenizer, model_dir: Path, reasoning: Path, chat: Path, max_len: int) -> tuple[Clock, int]:
    """Unsloth's Qwen3 reasoning-conversational notebook, step by step."""
    import pandas as pd
    from datasets import Dataset, load_dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    with Clock() as clock:
        reasoning_ds = load_dataset("parquet", data_files=str(reasoning), split="train")
        chat_ds = load_dataset("parquet", data_files=str(chat), split="train")
        reasoning_texts = tokenizer.apply_chat_template(
            [[{"role": "user", "content": r["problem"]}, {"role": "assistant", "content": r["generated_solution"]}]
             for r in reasoning_ds], tokenize=False)
        roles = {"human": "user", "gpt": "assistant", "system": "system"}
        chat_texts = tokenizer.apply_chat_template(
            [[{"role": roles[t["from"]], "content": t["value"]} for t in row] for row in chat_ds["conversations"]],
            tokenize=False)
        chat_series = pd.Series(chat_texts).sample(int(len(reasoning_texts) * RATIO / (1 - RATIO)), random_state=2407)
        data = pd.concat([pd.Series(reasoning_texts), pd.Series(chat_series)])
        data.name = "text"
        combined = Dataset.from_pandas(pd.DataFrame(data)).shuffle(seed=3407)
        with tempfile.TemporaryDirectory() as out:
            trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=combined,
                                 args=SFTConfig(output_dir=out, dataset_text_field="text", max_length=max_len,
                                                report_to=[], use_cpu=True, dataset_num_proc=None))
    return clock, len(trainer.train_dataset)


def _rss_anon_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_child(reasoning: str, chat: str, tokenizer_dir: str, max_len: int) -> None:
    """In a fresh process: prepare the given files; print RSS after imports and at the peak (MB), both total
    (ru_maxrss, which counts pages of memory-mapped files) and anonymous (heap, sampled every 20 ms)."""
    import threading

    import datasets  # noqa: F401
    from transformers import AutoTokenizer

    from kit.data import prepare_data

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    baseline, anon_base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, _rss_anon_mb()
    anon_peak, done = [anon_base], threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            anon_peak.append(_rss_anon_mb())

    sampler = threading.Thread(target=sample)
    sampler.start()
    with tempfile.TemporaryDirectory() as tmp:
        prepare_data(kit_config(Path(reasoning), Path(chat), max_len), tokenizer, cache_dir=tmp, progress=False)
    done.set()
    sampler.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"rss_after_imports_mb": round(baseline), "rss_peak_mb": round(peak),
                      "anon_after_imports_mb": round(anon_base), "anon_peak_mb": round(max(anon_peak))}))


def timings(args) -> dict:
    """The kit cold and cached, the limit and the reference on the same rows; prints them side by side."""
    from transformers import AutoTokenizer

    from kit.models.tiny import build_tiny_model

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        reasoning, chat = write_rows(Path(tmp), args.rows, args.chat_rows or args.rows)
        cold, cached, mix = run_kit(tokenizer, reasoning, chat, args.max_len, Path(tmp) / "cache")
        limit = limit_in_a_child(args.tokenizer, reasoning, chat, mix["chat_rows"])
        ref, ref_rows = run_reference(tokenizer, build_tiny_model(), reasoning, chat, args.max_len)
    results = {"reasoning_rows": args.rows, "chat_rows": args.chat_rows or args.rows,
               "rows_in_mix": {"kit": mix["train_rows"], "reference": ref_rows}, "cpus": os.cpu_count(),
               "load_average": os.getloadavg()[0], "tokenizer": Path(args.tokenizer).name,
               "cold_over_limit": round(cold.wall / limit.wall, 2), "speedup_cold": round(ref.wall / cold.wall, 1),
               "speedup_cached": round(ref.wall / cached.wall, 1)}
    for name, clock in (("limit", limit), ("reference", ref), ("kit_cold", cold), ("kit_cached", cached)):
        results.update({f"{name}_s": round(clock.wall, 3), f"{name}_cpu_s": round(clock.cpu, 3)})
    print(f"mix of {mix['train_rows']} rows ({args.rows} reasoning + {RATIO:.0%} chat drawn from "
          f"{args.chat_rows or args.rows} chat rows), max length {args.max_len}, {os.cpu_count()} CPUs, "
          f"load average {results['load_average']:.1f}")
    print(f"  limit (apply_chat_template + encode_batch_fast, no offsets): {limit.wall:7.2f} s  "
          f"(CPU {limit.cpu:.2f} s)")
    print(f"  reference (pandas + apply_chat_template + SFTTrainer):        {ref.wall:7.2f} s  (CPU {ref.cpu:.2f} s)")
    print(f"  kit, cold:    {cold.wall:7.2f} s  (CPU {cold.cpu:.2f} s; {ref.wall / cold.wall:.1f}x the reference, "
          f"{cold.wall / limit.wall:.2f}x the limit)")
    print(f"  kit, cached:  {cached.wall:7.3f} s  ({ref.wall / cached.wall:.0f}x the reference)")
    return results


def memory(args) -> list[dict]:
    """The kit's RSS in a fresh process for each row count in `--rss`; prints each."""
    rss = []
    for rows in args.rss:  # the parent writes the files, so the child's peak is the kit's alone
        with tempfile.TemporaryDirectory() as tmp:
            files = write_rows(Path(tmp), rows, rows)
            out = subprocess.run([sys.executable, __file__, "--rss-child", *map(str, files), "--tokenizer",
                                  args.tokenizer, "--max-len", str(args.max_len)], capture_output=True, text=True,
                                 check=True)
        rss.append({"rows_per_source": rows, **json.loads(out.stdout.strip().splitlines()[-1])})
        r = rss[-1]
        print(f"  kit memory, {rows:>6} reasoning + {rows:>6} chat rows: RSS {r['rss_after_imports_mb']} MB after "
              f"imports, {r['rss_peak_mb']} MB peak; anonymous {r['anon_after_imports_mb']} -> {r['anon_peak_mb']} MB")
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000, help="reasoning rows")
    parser.add_argument("--chat-rows", type=int, help="chat rows (default: as many as --rows; the reference "
                        "recipe has 5x more: 100k FineTome rows for 19k reasoning rows)")
    parser.add_argument("--max-len", type=int, default=8192)
    parser.add_argument("--tokenizer", default=str(QWEN3_TOKENIZER))
    parser.add_argument("--rss", type=int, nargs="*", default=[], help="row counts for the RSS-in-streaming check")
    parser.add_argument("--rss-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--limit-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.rss_child:
        return rss_child(*args.rss_child, args.tokenizer, args.max_len)
    if args.limit_child:
        from transformers import AutoTokenizer

        reasoning, chat, n_chat = args.limit_child
        clock = run_limit(AutoTokenizer.from_pretrained(args.tokenizer), Path(reasoning), Path(chat), int(n_chat))
        print(json.dumps([clock.wall, clock.cpu]))
        return None
    results = timings(args)
    results["rss"] = memory(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
