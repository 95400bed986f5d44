"""Export a finished run: the adapter and merged 16-bit weights for vLLM.

    python scripts/export.py --run runs/smoke [key=value ...]

The same as `qwen3-kit export` (kit/cli.py); `python scripts/export.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("export", "scripts/export.py")
