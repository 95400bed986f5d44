"""Prepare the reasoning/chat mix a config describes and print its report.

    python scripts/prepare_data.py --config configs/smoke.yaml [key=value ...]

The same as `qwen3-kit prepare` (kit/cli.py); `python scripts/prepare_data.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("prepare", "scripts/prepare_data.py")
