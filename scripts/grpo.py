"""After SFT, reinforce math with GRPO on the same GPU; run the same command again to resume.

    python scripts/grpo.py --config configs/smoke.yaml [key=value ...]

The same as `qwen3-kit grpo` (kit/cli.py); `python scripts/grpo.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("grpo", "scripts/grpo.py")
