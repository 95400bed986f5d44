"""Export a finished run: the adapter, and merged 16-bit weights that vLLM serves.

    python scripts/export.py --run runs/smoke
    python scripts/export.py --run runs/qwen3-14b-math export.thinking_default=false
    python scripts/export.py --run runs/qwen3-14b-math "export.formats=[merged_16bit]" export.overwrite=true

The run's own config.yaml is read; key=value arguments override it. For a real Qwen3 the 16-bit base
(Qwen/Qwen3-<size>) is downloaded from ModelScope through the kit's hub; nothing comes from Hugging Face. The merge
runs on the CPU a tensor at a time: no GPU, and about one tensor's memory (a 32B model merges with 64 GB of RAM).
"""

import argparse
from pathlib import Path

from kit.config import load_config
from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the run folder (holds config.yaml and adapter/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. export.thinking_default=false")
    args = parser.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.yaml", args.overrides)

    from kit.export import export_run

    result = export_run(run, cfg)
    for fmt, folder in result.folders.items():
        kept = " (kept: complete from an earlier export; export.overwrite=true makes it again)" if fmt in result.kept \
            else ""
        print(f"{fmt:>20}: {folder}{kept}")
    if result.max_logit_diff is not None:
        print(f"merged weights checked against peft's merge; logits of the first layers differ from base + adapter "
              f"by at most {result.max_logit_diff:.4f} (largest logit {result.logit_scale:.2f})")
    print(f"\nserve:\n  {result.serve_command}\n\nclient:\n{result.client_snippet}")


if __name__ == "__main__":
    cli(main)
