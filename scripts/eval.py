"""Compare the base model and a run's tuned adapter: held-out math, the thinking switch, instruction following.

    python scripts/eval.py --run runs/smoke [key=value ...]
    python scripts/eval.py --run runs/qwen3-14b-math eval.math=math500 eval.endpoint=http://localhost:8000/v1

The same as `qwen3-kit eval` (kit/cli.py); `python scripts/eval.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("eval", "scripts/eval.py")
