"""Download Qwen3 weights from ModelScope onto the data disk, verified; or plan VRAM.

    python scripts/download.py Qwen3-14B | --plan --gpu-gb 24

The same as `qwen3-kit download` (kit/cli.py); `python scripts/download.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("download", "scripts/download.py")
