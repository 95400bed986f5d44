"""Everything that needs a GPU, in one command that writes JSON and Markdown into a folder: tests/gpu, unsloth
against hf at the 0.6B, 8B and 14B shapes (tokens/s, peak memory, MFU, first step, the longest sequence under a
24 GiB cap at 8B and 14B), the CPU merge at the 14B shape, and a few GRPO steps at 0.6B (the kit's GRPO through
unsloth: step time, generation speed, peak memory), each beside kit.models.memory's estimate.

    python scripts/gpu_check.py --out gpu-results                     # on the GPU machine; about 25 min on one H100
    python scripts/gpu_check.py --out gpu-results --stop-after 120    # calls of at most 10 min: repeat until done
    python scripts/gpu_check.py --out /tmp/rehearsal                  # no GPU: the tiny-shape rehearsal CI runs

A part's results are saved when it ends, so the same command run again continues where it stopped; report.md and
report.json are rebuilt from every saved part at the end of each run. docs/benchmarks.md says how to run it
through the device tool. Needs no wandb, jupyter, modelscope or matplotlib.
"""

import argparse
import sys
from pathlib import Path

from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for <part>.json, report.json and report.md")
    parser.add_argument("--parts", nargs="+", help="default: env padding tests bench:8B bench:14B merge:14B "
                                                   "bench:0.6B grpo:0.6B (no GPU: env padding tests bench:tiny "
                                                   "merge:tiny grpo:tiny)")
    parser.add_argument("--models", default="", help="where random-weight models are built (default: <out>/models)")
    parser.add_argument("--stop-after", type=float, default=float("inf"), help="start no part after this many s")
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cap-gib", type=float, default=24.0, help="memory cap of the longest-sequence search")
    parser.add_argument("--max-seq", type=int, default=32768)
    args = parser.parse_args()

    from kit.gpu_check import default_parts, run_parts, write_report

    out = Path(args.out)
    left = run_parts(out, args.parts or default_parts(), models=Path(args.models) if args.models else out / "models",
                     stop_after_s=args.stop_after, seq=args.seq, steps=args.steps, cap_gib=args.cap_gib,
                     max_seq=args.max_seq)
    print(write_report(out, " ".join(["python scripts/gpu_check.py", *sys.argv[1:]])))
    print(f"\nstill to run: {' '.join(left)} (run the same command again)" if left else "\nall parts done")


if __name__ == "__main__":
    cli(main)
