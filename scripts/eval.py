"""Compare the base model and a run's tuned adapter: math accuracy, the thinking switch, chat retention.

    python scripts/eval.py --run runs/smoke
    python scripts/eval.py --run runs/qwen3-14b-math eval.n_math=200 eval.max_new_tokens=4096

Held-out sets come from eval.math_path / eval.chat_path; results go to <run>/eval.json and a printed table.
"""

import argparse
from pathlib import Path

from kit.backends import activate_backend
from kit.config import load_config
from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the run folder (holds config.yaml and adapter/)")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.n_math=100")
    args = parser.parse_args()
    cfg = load_config(Path(args.run) / "config.yaml", args.overrides)
    activate_backend(cfg.train.backend)  # unsloth before transformers, on a GPU

    from kit.evaluate import compare, evaluate_run

    reports = evaluate_run(args.run, cfg)
    print(compare(reports))
    print(f"details: {Path(args.run) / 'eval.json'}")


if __name__ == "__main__":
    cli(main)
