"""Chat in the terminal, turn after turn, switching Qwen3's thinking with its own soft switch.

    converse(model, tokenizer)       # what `qwen3-kit chat --run runs/smoke` runs when no prompt is given

`/think` and `/no_think` on a line of their own switch thinking for the turns that follow; at the end of a message
they switch it from that message on, and stay in it, as Qwen3 was trained to read them. The history keeps each
answer without its reasoning, as Qwen3's template does for earlier turns.
"""

from __future__ import annotations

from kit.inference.generate import generate

HELP = ("/think or /no_think switches thinking (also at the end of a message), /clear starts a new conversation, "
        "/quit or Ctrl-D ends")


def converse(model, tokenizer, *, thinking: bool = True, system: str | None = None, max_new_tokens: int = 1024) -> int:
    """Read messages from stdin until /quit or end of input, stream a reply to each, and return the turns taken.
    Ctrl-C during a reply stops that reply and keeps the conversation; at the prompt it ends the chat."""
    history: list[dict] = []
    turns = 0
    print(f"thinking is {'on' if thinking else 'off'}; {HELP}")
    while True:
        try:
            text = input(f"\n[{'think' if thinking else 'no_think'}] you: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return turns
        if text in ("/quit", "/exit"):
            return turns
        if text in ("/think", "/no_think", "/clear"):
            history = [] if text == "/clear" else history
            thinking = thinking if text == "/clear" else text == "/think"
            print("a new conversation" if text == "/clear" else f"thinking {'on' if thinking else 'off'}")
            continue
        if not text:
            continue
        if text.endswith(("/think", "/no_think")):  # Qwen3's soft switch, kept in the message the model reads
            thinking = text.endswith("/think")
        history.append({"role": "user", "content": text})
        conversation = ([{"role": "system", "content": system}] if system else []) + history
        print("assistant: ", end="", flush=True)
        try:
            reply = generate(model, tokenizer, [conversation], thinking=thinking, max_new_tokens=max_new_tokens,
                             stream=True)[0]
        except KeyboardInterrupt:
            history.pop()
            print("\n(reply stopped)")
            continue
        if not reply.closed:
            print(f"(the think block was still open after {max_new_tokens} tokens: raise --max-new-tokens)")
        history.append({"role": "assistant", "content": reply.answer})
        turns += 1
