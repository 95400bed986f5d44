"""Write the small sample data sets in `data/`: the toy world's "data" half (kit.models.toy) in the real schemas of
the public data sets.

    python scripts/make_sample_data.py

- `data/openmath_sample.parquet`: nvidia/OpenMathReasoning `cot` columns; two-digit sums, each with its answer
  computed, so `expected_answer` is right and a `<think>` trace of column steps leads to a `\\boxed{}` answer.
  As a distilled model's traces do, some slip: half of those with a carry drop it and box a wrong sum.
- `data/openmath_heldout.parquet`: other sums, for evaluation only.
- `data/finetome_sample.jsonl`: mlabonne/FineTome-100k rows (`conversations` of `{from, value}`, `source`, `score`):
  chat about numbers that keeps checkable instructions, with system prompts and multi-turn conversations.
- `data/eval/toy_instructions.jsonl`: prompts of that chat with their checks, for `eval.instructions`.
- `data/custom_{messages,sharegpt,alpaca}.jsonl`: a user's own data in the three accepted formats.
Deterministic: the same files every run.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kit.models.toy import CHECKED, chat_turn, conversation, math_row

DATA = Path(__file__).resolve().parent.parent / "data"


SLIP = 0.5  # of the traces with a carry drop it: SFT learns the slip with the steps, GRPO's correctness reward not


def openmath_rows(n: int, seed: int, drop_kaggle_column: bool) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        toy = math_row(rng, slip=SLIP)
        row = {
            "expected_answer": toy["expected"],
            "problem_type": "has_answer_extracted" if rng.random() < 0.85 else "no_answer_extracted",
            "problem_source": "kit_toy_sums",
            "generation_model": "DeepSeek-R1",
            "pass_rate_72b_tir": "n/a" if rng.random() < 0.2 else f"{rng.randint(1, 32) / 32:.6f}",
            "problem": toy["problem"],
            "generated_solution": f"<think>\n{toy['think']}\n</think>\n\n{toy['answer']}",
            "inference_mode": "cot",
        }
        if not drop_kaggle_column:
            row["used_in_kaggle"] = rng.random() < 0.1
        rows.append(row)
    return rows


def finetome_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    role = {"user": "human", "assistant": "gpt", "system": "system"}
    return [{"conversations": [{"from": role[m["role"]], "value": m["content"]} for m in conversation(rng, "data", i)],
             "source": "kit_toy_chat", "score": round(rng.uniform(4.0, 5.2), 3)} for i in range(n)]


def instruction_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [{"id": f"toy-{i}", "prompt": t["prompt"], "checks": t["checks"]}
            for i, t in enumerate(chat_turn(rng, tasks=CHECKED) for _ in range(n))]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main() -> None:
    DATA.mkdir(exist_ok=True)
    pq.write_table(pa.Table.from_pylist(openmath_rows(400, seed=1, drop_kaggle_column=False)),
                   DATA / "openmath_sample.parquet")
    # Held-out problems come from another seed and lack the newer `used_in_kaggle` column (schema drift).
    pq.write_table(pa.Table.from_pylist(openmath_rows(60, seed=2, drop_kaggle_column=True)),
                   DATA / "openmath_heldout.parquet")
    write_jsonl(DATA / "finetome_sample.jsonl", finetome_rows(300, seed=3))
    write_jsonl(DATA / "finetome_heldout.jsonl", finetome_rows(40, seed=4))
    write_jsonl(DATA / "eval" / "toy_instructions.jsonl", instruction_rows(40, seed=6))
    chat = finetome_rows(12, seed=5)
    role = {"human": "user", "gpt": "assistant", "system": "system"}
    write_jsonl(DATA / "custom_sharegpt.jsonl", chat)
    write_jsonl(DATA / "custom_messages.jsonl",
                [{"messages": [{"role": role[t["from"]], "content": t["value"]} for t in r["conversations"]]}
                 for r in chat])
    write_jsonl(DATA / "custom_alpaca.jsonl", [
        {"instruction": "Convert the temperature to Fahrenheit.", "input": "25 C", "output": "25 C is 77 F."},
        {"instruction": "Name the capital of Japan.", "input": "", "output": "Tokyo."},
        {"instruction": "Summarise in one sentence.", "input": "The cat sat on the mat all afternoon, asleep.",
         "output": "A cat napped on a mat all afternoon."},
    ])


if __name__ == "__main__":
    main()
