"""Chat with a model folder, an adapter (with its base), or a merged export; thinking on, off, or both.

    python scripts/chat.py runs/smoke/adapter "What is 7 * 8?"
    python scripts/chat.py runs/qwen3-14b-math/export/merged_16bit "Explain recursion." --thinking off
    python scripts/chat.py runs/qwen3-14b-math/adapter "Solve x^2 = 9." --thinking both
"""

import argparse

from kit.backends import activate_backend
from kit.errors import cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="model, adapter or export folder")
    parser.add_argument("prompt")
    parser.add_argument("--thinking", choices=["on", "off", "both"], default="both")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument("--max-new-tokens", type=int, default=1024)
    parser.add_argument("--backend", default="auto", choices=["auto", "unsloth", "hf"])
    args = parser.parse_args()
    activate_backend(args.backend)

    from kit.infer import chat, load_for_inference

    model, tokenizer = load_for_inference(args.model, backend=args.backend)
    for thinking in {"on": [True], "off": [False], "both": [True, False]}[args.thinking]:
        reply = chat(model, tokenizer, args.prompt, thinking=thinking, system=args.system,
                     max_new_tokens=args.max_new_tokens)
        print(f"=== thinking {'on' if thinking else 'off'} ===")
        if reply.reasoning:
            print(f"[reasoning]\n{reply.reasoning}\n")
        print(f"[answer]\n{reply.answer}\n")


if __name__ == "__main__":
    cli(main)
