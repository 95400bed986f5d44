"""Chat with a finished run, or a model, adapter or export folder.

    python scripts/chat.py --run runs/smoke [prompt]

The same as `qwen3-kit chat` (kit/cli.py); `python scripts/chat.py --help` shows every option and example.
"""

from kit.cli import main

if __name__ == "__main__":
    main("chat", "scripts/chat.py")
