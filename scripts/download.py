"""Download Qwen3 weights from ModelScope (default) or Hugging Face into the data disk, verified.

    python scripts/download.py Qwen3-14B                         # Unsloth dynamic 4-bit, for training
    python scripts/download.py Qwen3-14B --variant base_16bit    # Qwen/Qwen3-14B, for the merged export
    python scripts/download.py Qwen3-8B --tokenizer-only         # config and tokenizer files only
    python scripts/download.py --plan --gpu-gb 24                # which Qwen3 and batch fit a 24 GB GPU

Interrupted? Run the same command again: finished files are kept and partial ones resume.
"""

import argparse

from kit.errors import cli
from kit.hub import catalog_table, download_model
from kit.memory import estimate, plan_table, recommend
from kit.qwen3 import FAMILY, TRAINABLE, VARIANTS, find


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help=f"one of {', '.join(m.name for m in FAMILY.values())}, "
                                                 "or a full repo id")
    parser.add_argument("--source", default="modelscope", choices=["modelscope", "huggingface"])
    parser.add_argument("--variant", default="dynamic_4bit", choices=VARIANTS)
    parser.add_argument("--cache-dir", default="", help="default: /root/autodl-tmp/qwen3-kit or ~/.cache/qwen3-kit")
    parser.add_argument("--revision", default="")
    parser.add_argument("--tokenizer-only", action="store_true", help="only *.json, *.jinja and *.txt files")
    parser.add_argument("--plan", action="store_true", help="print the VRAM plan instead of downloading")
    parser.add_argument("--gpu-gb", type=float, help="with --plan: your GPU's memory")
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=2)
    args = parser.parse_args()

    if args.plan:
        known = find(args.model or "")
        if known and known.size in TRAINABLE:
            for backend in ("unsloth", "hf"):
                est = estimate(known.size, seq_len=args.seq_len, batch=args.batch, backend=backend)
                print(f"{backend:>8}: {est}")
        if args.gpu_gb:
            pick = recommend(args.gpu_gb, seq_len=args.seq_len)
            print(f"{args.gpu_gb:g} GB GPU: " + (f"Qwen3-{pick[0]} at batch {pick[1]} ({pick[2].total_gb:.1f} GB)"
                                                 if pick else "no Qwen3 fits; try a shorter --seq-len"))
        else:
            print(plan_table(seq_len=args.seq_len))
        return
    if not args.model:
        print(catalog_table())
        parser.error("name a model (e.g. Qwen3-14B) or use --plan")
    patterns = ["*.json", "*.jinja", "*.txt", "*.model"] if args.tokenizer_only else None
    result = download_model(args.model, source=args.source, variant=args.variant, cache_dir=args.cache_dir,
                            revision=args.revision, allow_patterns=patterns)
    state = "already complete" if result.cached else "downloaded and verified"
    print(f"{result.repo_id}: {result.files} files, {result.bytes / 1e9:.2f} GB, {state}\n{result.path}")


if __name__ == "__main__":
    cli(main)
