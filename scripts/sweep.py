"""Train a short run per chat ratio, evaluate each, and name the ratios on the front; run it again to continue.

    python scripts/sweep.py --config configs/smoke.yaml data.chat_ratio=0.1,0.25 train.max_steps=20
    python scripts/sweep.py --config configs/qwen3-14b-math.yaml data.chat_ratio=0.1,0.25,0.5 train.max_steps=200

The same as `qwen3-kit sweep` (kit/cli.py); `python scripts/sweep.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("sweep", "scripts/sweep.py")
