"""Compare the base model and a run's tuned adapter: held-out math, the thinking switch, instruction following.

    python scripts/eval.py --run runs/smoke
    python scripts/eval.py --run runs/qwen3-14b-math eval.n_math=200 eval.max_new_tokens=4096
    python scripts/eval.py --run runs/qwen3-14b-math eval.math=math500 eval.endpoint=http://localhost:8000/v1

Math comes from eval.math (default: the problems data.reasoning.heldout kept out of training), instructions from
eval.instructions; generation is local (batches of eval.batch_size) or by an OpenAI-compatible server serving the
tuned model (eval.endpoint, e.g. vLLM serving the export; eval.base_endpoint for the base). Results go to
<run>/eval.json and a printed table.
"""

import argparse
from pathlib import Path

from kit.backends import activate_backend
from kit.config import load_config
from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="the run folder (holds config.yaml and adapter/)")
    parser.add_argument("--show", type=int, default=2, help="print the replies to this many prompts in full")
    parser.add_argument("overrides", nargs="*", help="key=value overrides, e.g. eval.n_math=100")
    args = parser.parse_args()
    cfg = load_config(Path(args.run) / "config.yaml", args.overrides)
    if not (cfg.eval.endpoint and cfg.eval.base_endpoint):
        activate_backend(cfg.train.backend)  # unsloth before transformers, on a GPU

    from kit.evaluate import compare, evaluate_run, show_replies

    reports = evaluate_run(args.run, cfg)
    for section in ("math", "instructions"):
        if args.show and reports["tuned"]["details"][section]:
            print(show_replies(reports, section, args.show), end="\n\n")
    print(compare(reports))
    print(f"details: {Path(args.run) / 'eval.json'}")


if __name__ == "__main__":
    cli(main)
