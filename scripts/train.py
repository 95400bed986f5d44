"""Train a LoRA adapter on Qwen3; run the same command again to resume.

    python scripts/train.py --config configs/smoke.yaml [key=value ...]

The same as `qwen3-kit train` (kit/cli.py); `python scripts/train.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("train", "scripts/train.py")
