"""GRPO's prompts: problems of `data.reasoning` with an answer to check, none of them held out for evaluation.

    prompts = grpo_prompts(cfg, tokenizer)     # prompts.train: a Dataset of prompt (the turns before the reply), answer
    print(format_prompts(prompts.report))

Rows go through SFT's own converter and filters (kit.data.formats.to_messages), so a problem `data.reasoning.heldout`
keeps out of training is kept out here by the same keyed hash (kit.data.formats.held_out): `qwen3-kit eval` on a GRPO
run still scores unseen problems. Each problem is taken once (OpenMathReasoning holds several solutions per problem),
with its `expected_answer`; `grpo.problem_types` keeps those whose answer was found, not guessed by a model. Reading
stops once the steps have their problems (grpo.max_steps x grpo.prompts_per_step), so a 3.2M-row split is not read
to its end.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from kit.config import Config
from kit.data.formats import DataError, Filtered, problem_text, to_messages
from kit.data.sources import checked, iter_source


@dataclass
class Prompts:
    """The problems GRPO trains on and their report (the run folder's data_report.json)."""

    train: object  # datasets.Dataset: prompt ([{"role", "content"}, ...]), expected_answer
    report: dict


def _candidate(raw, cfg: Config) -> tuple[list[dict], str]:
    """(the turns before the reply, the expected answer) of a source row; raises MalformedRow, BadRow or Filtered."""
    from kit.evaluation.benchmarks import problem_and_answer

    conversation = to_messages(raw.data, cfg.data.reasoning)  # SFT's filters, held-out problems included
    types = cfg.grpo.problem_types
    if types and "problem_type" in raw.data and raw.data["problem_type"] not in types:
        raise Filtered("grpo_problem_type")
    answer = problem_and_answer(raw.data)[1]
    if not answer:
        raise Filtered("no_answer")
    return conversation[:-1], answer


def _rows(cfg: Config, cache_dir: Path):
    """(row number, prompt, answer, "") of each row after `grpo.skip_rows`, or (row number, None, "", why it was left
    out); a bad row raises where `data.on_bad_row` is error."""
    for number, raw in enumerate(iter_source(cfg.data.reasoning, cache_dir), start=1):
        if number <= cfg.grpo.skip_rows:
            yield number, None, "", "skipped_rows"  # counted, so that read = valid + dropped
            continue
        candidate, dropped = checked("reasoning", raw, cfg.data.on_bad_row, lambda r: _candidate(r, cfg))
        yield number, *(candidate or (None, "")), dropped  # filtered_held_out: what eval checks for


def grpo_prompts(cfg: Config, tokenizer, cache_dir: str | Path | None = None) -> Prompts:
    """Up to grpo.max_steps x grpo.prompts_per_step distinct problems with answers, each at most
    grpo.max_prompt_length tokens through the chat template; DataError when there is none."""
    from datasets import Dataset

    from kit.paths import cache_root

    g = cfg.grpo
    needed = g.max_steps * g.prompts_per_step
    cache = Path(cache_dir) if cache_dir else cache_root(cfg.model.cache_dir) / "datasets"
    dropped, seen, kept, lengths, read = Counter(), set(), [], [], 0
    for number, prompt, answer, left_out in _rows(cfg, cache):
        read = number
        if left_out:
            dropped[left_out] += 1
            continue
        key = problem_text(prompt)
        if key in seen:
            dropped["duplicate_problem"] += 1
            continue
        seen.add(key)
        text = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True,
                                             enable_thinking=g.thinking)
        length = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if length > g.max_prompt_length:
            dropped["prompt_too_long"] += 1
            continue
        kept.append({"prompt": prompt, "expected_answer": answer})
        lengths.append(length)
        if len(kept) == needed:
            break
    if not kept:
        raise DataError(f"data.reasoning '{cfg.data.reasoning.path}' gave no problem to reinforce: GRPO needs rows "
                        f"with an answer (expected_answer or answer) that pass its filters (dropped: {dict(dropped)}).")
    return Prompts(Dataset.from_list(kept), _report(cfg, read, kept, lengths, dropped, needed))


def _report(cfg: Config, read: int, kept: list, lengths: list[int], dropped: Counter, needed: int) -> dict:
    lengths = sorted(lengths)
    src = cfg.data.reasoning
    return {
        "sources": {"reasoning": {"role": "reasoning", "path": src.path, "rows_read": read, "rows_valid": len(kept),
                                  "rows_kept": len(kept),
                                  "dropped": dict(sorted(dropped.items()))}},
        "prompts": {"problems": len(kept), "needed": needed, "skipped_rows": cfg.grpo.skip_rows,
                    "thinking": cfg.grpo.thinking,
                    "length": {"p50": lengths[len(lengths) // 2], "max": lengths[-1]}},
        "heldout_share": src.heldout,  # every problem kit.data.heldout holds out at this share was left out
    }


def format_prompts(report: dict) -> str:
    """The prompts' report as printed lines."""
    p, source = report["prompts"], report["sources"]["reasoning"]
    repeats = f"; each is seen {p['needed'] / p['problems']:.1f} times" if p["problems"] < p["needed"] else ""
    lines = [f"prompts: {p['problems']} problems from {source['path']}, {source['rows_read']} rows read (the steps use "
             f"{p['needed']}{repeats}), "
             f"{p['length']['p50']} tokens at the median, {p['length']['max']} at most, thinking "
             f"{'on' if p['thinking'] else 'off'}"]
    lines += [f"  dropped {reason}: {n}" + (" (grpo.skip_rows)" if reason == "skipped_rows" else "")
              for reason, n in source["dropped"].items()]
    return "\n".join(lines)
