"""Compare the base model and a run's tuned adapter.

    python scripts/eval.py --run runs/smoke [key=value ...]

The same as `qwen3-kit eval` (kit/cli.py); `python scripts/eval.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("eval", "scripts/eval.py")
