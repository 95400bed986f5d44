"""Benchmark local evaluation: its wall time on a run, and the cost of a decoded token with the adapter unmerged,
merged by peft into the loaded weights (as evaluation and chat generate), and in a merged model, side by side.

    python scripts/bench_eval.py --run runs/smoke                 # after the smoke command
    python scripts/bench_eval.py --run runs/smoke --tokens 128 --repeats 5 --skip-eval

Each decode measurement generates the same prompts greedily to exactly `--tokens` new tokens in one batch of
`eval.batch_size`, `--repeats` times in turn (unmerged, merged, merged model, unmerged, ...), so a change in the
machine's load moves all three; the median per token is printed. The merged model is peft's `merge_and_unload` of
the same load: the plain model class with the merged weights, as the export holds them.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
from pathlib import Path


def per_token_s(model, tokenizer, conversations: list, tokens: int) -> tuple[float, float]:
    """(wall, CPU) seconds per decoding step: CPU time (all threads) moves less than wall time on a busy machine."""
    from kit.inference.generate import generate

    start, cpu = time.perf_counter(), time.process_time()
    generate(model, tokenizer, conversations, thinking=False, max_new_tokens=tokens, min_new_tokens=tokens,
             do_sample=False)
    return (time.perf_counter() - start) / tokens, (time.process_time() - cpu) / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/smoke"))
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per decode measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-eval", action="store_true", help="only the per-token costs")
    args = parser.parse_args()

    from kit.config import load_config
    from kit.evaluation.scores import evaluate_run
    from kit.hub import resolve_model
    from kit.inference.generate import load_for_inference, merge_for_decoding

    cfg = load_config(args.run / "config.yaml")
    import torch  # after kit, which sets how torch's threads wait (kit.machine)

    print(f"{args.run}: model {cfg.model.name}, {os.cpu_count()} cores, torch {torch.get_num_threads()} threads "
          f"(OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}), load average {os.getloadavg()[0]:.1f}")
    if not args.skip_eval:
        start = time.perf_counter()
        evaluate_run(args.run, cfg, progress=False)
        e = cfg.eval
        print(f"evaluate_run: {time.perf_counter() - start:.1f} s (base and tuned, {e.n_math} math problems and "
              f"{e.n_instructions} instructions, each thinking on and off, up to {e.max_new_tokens} new tokens)")
    prompts = [[{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}] for i in range(cfg.eval.batch_size)]
    model, tokenizer = load_for_inference(args.run / "adapter", base=resolve_model(cfg.model),
                                          backend=cfg.train.backend)
    merged_model = copy.deepcopy(model).merge_and_unload()
    per_token_s(model, tokenizer, prompts, 4)  # warm-up
    times = {"adapter unmerged": [], "adapter merged (peft)": [], "merged model": []}
    for _ in range(args.repeats):
        times["adapter unmerged"].append(per_token_s(model, tokenizer, prompts, args.tokens))
        merge_for_decoding(model)
        times["adapter merged (peft)"].append(per_token_s(model, tokenizer, prompts, args.tokens))
        model.unmerge_adapter()
        times["merged model"].append(per_token_s(merged_model, tokenizer, prompts, args.tokens))
    print(f"per decoding step, batch {len(prompts)}, {args.tokens} tokens, median of {args.repeats} "
          f"(load average {os.getloadavg()[0]:.1f} at the end):")
    for clock, which in (("wall", 0), ("CPU", 1)):
        reference = statistics.median(t[which] for t in times["merged model"])
        for name, values in times.items():
            median = statistics.median(t[which] for t in values)
            print(f"  {clock:<4} {name:<24} {median * 1000:8.2f} ms   {median / reference:.2f}x the merged model   "
                  f"(runs: {', '.join(f'{t[which] * 1000:.1f}' for t in values)})")


if __name__ == "__main__":
    main()
