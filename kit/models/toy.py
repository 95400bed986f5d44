"""The toy world of the built-in tiny model: two-digit sums worked column by column, and short chat about numbers
that keeps instructions a program can check.

    row = math_row(rng, where="data")    # {"problem", "think", "answer", "expected"}: "What is 47 + 38?" in steps
    turn = chat_turn(rng, where="data")  # {"prompt", "reasoning", "reply", "checks"}: "Give 3 facts about 12, ..."

The world is cut in two halves by a keyed hash of each sum and prompt. kit.models.tiny pretrains the tiny base on
the "base" half, as a real base learns language: sums worked as plain text and in chat, and chat in Qwen3's template,
thinking on and off. scripts/make_sample_data.py writes `data/` from the "data" half in the real data sets' schemas.
So the base has seen no problem or prompt of `data/`, and has never answered a problem in the chat template with its
steps in a think block and the result boxed: supervised fine-tuning teaches that, and the kit's measurements see it.
"""

from __future__ import annotations

import hashlib
import json
import random

PHRASES = ["What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}.", "Find the sum of {a} and {b}."]
SYSTEMS = ["You are a helpful assistant.", "You are a friendly assistant who likes numbers."]


def side(key: str) -> str:
    """"base" or "data": the half of the world a sum ("47+38") or a chat prompt belongs to."""
    return "base" if hashlib.blake2b(key.encode(), digest_size=1, key=b"qwen3-kit toy").digest()[0] < 128 else "data"


def sum_steps(a: int, b: int, slip: bool = False) -> str:
    """The column sum of two two-digit numbers, one line per column: the worked steps of a think block. With `slip`,
    a carry is dropped, as a model's traces now and then slip."""
    ones, tens = a % 10 + b % 10, a // 10 + b // 10
    carry = 0 if slip else ones // 10
    return (f"Ones: {a % 10} + {b % 10} = {ones}. Write {ones % 10}, carry {carry}.\n"
            f"Tens: {a // 10} + {b // 10} = {tens}. With the carry, {tens} + {carry} = {tens + carry}.\n"
            f"So {a} + {b} = {10 * (tens + carry) + ones % 10}.")


def pair(rng: random.Random, where: str) -> tuple[int, int]:
    while True:
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        if side(f"{a}+{b}") == where:
            return a, b


def math_row(rng: random.Random, where: str = "data", slip: float = 0.0) -> dict:
    """A problem, its worked steps and its answer; a sum with a carry drops it with probability `slip`, so its trace
    reaches a wrong answer while `expected` stays right."""
    a, b = pair(rng, where)
    steps = sum_steps(a, b, slip=rng.random() < slip)
    result = steps.rsplit(" = ", 1)[1].rstrip(".")
    return {"problem": rng.choice(PHRASES).format(a=a, b=b), "think": steps,
            "answer": f"{a} + {b} = {result}.\n\n\\boxed{{{result}}}", "expected": str(a + b)}


def _parity(k: int) -> str:
    return "even" if k % 2 == 0 else "odd"


def _bullets(rng: random.Random, k: int):
    n = rng.choice([2, 3, 4])
    facts = [f"{k} is {_parity(k)}.", f"{k} has the digits {k // 10} and {k % 10}.",
             f"{k} is {k // 10} tens and {k % 10} ones.", f"{k} ends in {k % 10}."]
    return (f"Give {n} facts about the number {k}, as a bullet list.", f"{n} facts about {k}, one bullet each.",
            "\n".join(f"- {f}" for f in facts[:n]),
            [{"check": "bullets", "n": n}, {"check": "include", "words": [str(k)]}])


def _json(rng: random.Random, k: int):
    return (f"Describe the number {k} as a JSON object with the keys \"number\" and \"parity\".",
            f"A JSON object for {k}: it is {_parity(k)}.", json.dumps({"number": k, "parity": _parity(k)}),
            [{"check": "json_object", "keys": ["number", "parity"]}])


def _title(rng: random.Random, k: int):
    return (f"Write one line about the number {k}, with a title in double angular brackets, like <<title>>.",
            f"A title for {k}, then one line.", f"<<The number {k}>>\n{k} is {_parity(k)}.",
            [{"check": "title"}, {"check": "include", "words": [str(k)]}])


def _lowercase(rng: random.Random, k: int):
    return (f"In lowercase letters only, tell me what kind of number {k} is.", f"{k} is {_parity(k)}; no capitals.",
            f"{k} is an {_parity(k)} number with two digits.",
            [{"check": "lowercase"}, {"check": "max_words", "n": 12}])


def _box(rng: random.Random, k: int):
    return (f"Put the number {k} in a box, as LaTeX writes it.", f"{k} in a box.", f"\\boxed{{{k}}}",
            [{"check": "include", "words": [f"\\boxed{{{k}}}"]}])


CHECKED = [_bullets, _json, _title, _lowercase]  # the eval's prompts: a box is kept by any boxed number
TASKS = [*CHECKED, _box]


def chat_turn(rng: random.Random, where: str = "data", tasks: list = TASKS) -> dict:
    while True:
        prompt, reasoning, reply, checks = rng.choice(tasks)(rng, rng.randint(10, 99))
        if side(prompt) == where:
            return {"prompt": prompt, "reasoning": reasoning, "reply": reply, "checks": checks}


def conversation(rng: random.Random, where: str, i: int, thinking: bool = False) -> list[dict]:
    """A chat in `{role, content}` messages: a system prompt every 4th, a second turn every 3rd (as FineTome has).
    Every 5th is a sum, answered as chat answers it, with no box: the data half answers directly; the base half (two
    in 5) works it, in the think block with `thinking`, else in the reply, so the base can do sums in the chat
    template and not only in plain text."""
    messages = [{"role": "system", "content": rng.choice(SYSTEMS)}] if i % 4 == 0 else []
    if i % 5 == 4 or (where == "base" and i % 5 == 2):
        a, b = pair(rng, where)
        said, steps = f"{a} + {b} = {a + b}.", sum_steps(a, b)
        if where == "data":
            reply = {"content": said}
        elif thinking:
            reply = {"content": said, "reasoning": steps}
        else:
            reply = {"content": steps}
        return messages + [{"role": "user", "content": rng.choice(PHRASES).format(a=a, b=b)},
                           {"role": "assistant", **reply}]
    for _ in range(2 if i % 3 == 1 else 1):
        turn = chat_turn(rng, where)
        messages += [{"role": "user", "content": turn["prompt"]},
                     {"role": "assistant", "content": turn["reply"], "reasoning": turn["reasoning"]}]
    return messages


def base_document(rng: random.Random, i: int, render) -> str:
    """The i-th pretraining document of the base half, `<|endoftext|>` closing it: a chat rendered by
    `render(messages, thinking)` in Qwen3's template, thinking on or off (2 in 5), two sums worked as plain text (2 in
    5), sixteen addition facts or a list of numbers said again (1 in 5). A sum asked in the chat template is never
    answered boxed: that is the task fine-tuning teaches."""
    kind = i % 5
    if kind in (0, 2):
        thinking = rng.random() < 0.5
        messages = conversation(rng, "base", i // 5 + kind, thinking)
        messages = [{"role": m["role"], "content": f"<think>\n{m['reasoning']}\n</think>\n\n{m['content']}"
                     if thinking and "reasoning" in m else m["content"]} for m in messages]
        return render(messages, thinking)
    if kind == 3 and i // 5 % 2:  # numbers said again: what teaches a model to copy from what it has read
        numbers = " ".join(str(rng.randint(10, 99)) for _ in range(rng.randint(4, 10)))
        text = f"Say these numbers again: {numbers}.\n{numbers}."
    elif kind == 3:  # the columns' facts (7 + 5 = 12.) and the carry's (12 + 1 = 13.)
        facts = []
        for _ in range(16):
            x, y = rng.randint(0, 9), rng.randint(0, 9)
            facts.append(f"{x} + {y} = {x + y}." if rng.random() < 0.8 else f"{x + y} + {y % 2} = {x + y + y % 2}.")
        text = "\n".join(facts)
    else:
        text = "\n\n".join(f"{rng.choice(PHRASES).format(a=a, b=b)}\n{sum_steps(a, b)}\n\n{a} + {b} = {a + b}."
                             for a, b in (pair(rng, "base"), pair(rng, "base")))
    return text + "<|endoftext|>"
