"""Math problems to score: `heldout` (the problems data.reasoning.heldout kept out of training), a published set
(math500, gsm8k, aime24, aime25, from ModelScope), or a local file with a problem and an answer column.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

from kit.errors import KitError
from kit.evaluation.benchmark_sets import BENCHMARKS


class EvalDataError(KitError, ValueError):
    pass


NUMBER_WITH_COMMAS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")


def problem_and_answer(row: dict) -> tuple[str, str]:
    """(problem, final answer) of a row in any of the accepted schemas; "" where a part is missing."""
    from kit.evaluation.answers import last_boxed

    problem = next((row[k] for k in ("problem", "question", "Problem", "Question") if isinstance(row.get(k), str)), "")
    answer = next((str(row[k]) for k in ("expected_answer", "answer", "Answer", "solution")
                   if row.get(k) not in (None, "")), "")
    answer = answer.rsplit("####", 1)[-1] if "####" in answer else answer  # GSM8K: the reasoning, then #### 42
    answer = (last_boxed(answer) or answer).strip()
    if NUMBER_WITH_COMMAS.fullmatch(answer):
        answer = answer.replace(",", "")  # 1,600 is a number, not a tuple
    return problem.strip(), answer


def _rows(source, cache_dir: Path) -> Iterator[dict]:
    from kit.data.sources import MalformedRow, iter_source, read_files

    stream = read_files([Path(source)]) if isinstance(source, (str, Path)) else iter_source(source, cache_dir)
    for raw in stream:
        if not isinstance(raw, MalformedRow):
            yield raw.data


def _file_rows(path: Path) -> Iterator[dict]:
    """A local file's rows; a bad line or a row missing a problem or answer is an error naming file, line and field."""
    from kit.data.sources import MalformedRow, read_files

    for raw in read_files([path]):  # that it is a file, the config's checks said
        if isinstance(raw, MalformedRow):
            raise EvalDataError(f"eval.math: {raw}; fix or remove that line.")
        problem, answer = problem_and_answer(raw.data)
        if not (problem and answer):
            field = "answer (expected_answer, answer or solution)" if problem else "problem (problem or question)"
            raise EvalDataError(f"eval.math: {raw.file} row {raw.line} has no {field}; fix or remove that row.")
        yield raw.data


def _heldout(cfg, cache_dir: Path) -> Iterator[dict]:
    """Rows of `data.reasoning` that pass its filters and that its `heldout` share keeps out of training."""
    from kit.data.formats import BadRow, Filtered, held_out, to_messages

    src = cfg.data.reasoning
    if src.heldout <= 0:
        raise EvalDataError("eval.math is heldout but data.reasoning.heldout is 0, so nothing was kept out of "
                            "training; set eval.math to math500, gsm8k, aime24, aime25 or a file.")
    convert = dataclasses.replace(src, heldout=0.0)
    for row in _rows(src, cache_dir):
        try:
            conversation = to_messages(row, convert)
        except (BadRow, Filtered):
            continue
        if held_out(conversation, src.heldout):
            yield row


def math_rows(cfg, n: int, cache_dir: str | Path | None = None) -> list[dict]:
    """Up to `n` distinct problems with answers from `cfg.eval.math` (see the module docstring)."""
    from kit.config import SourceConfig
    from kit.paths import cache_root

    cache = Path(cache_dir) if cache_dir else cache_root(cfg.model.cache_dir) / "datasets"
    name = cfg.eval.math
    if name == "heldout":
        rows = _heldout(cfg, cache)
    elif name in BENCHMARKS:
        b = BENCHMARKS[name]
        rows = _rows(SourceConfig(path=b.repo, hub="modelscope", split=b.split, subset=b.subset), cache)
    else:
        rows = _file_rows(Path(name).expanduser())
    out, seen = [], set()
    for row in rows:
        if len(out) == n:
            break
        problem, answer = problem_and_answer(row)
        if problem and answer and problem not in seen:
            seen.add(problem)
            out.append({"problem": problem, "expected_answer": answer})
    if not out and n:
        raise EvalDataError(f"eval.math '{name}' gave no problem with an answer to score (need a problem or "
                            "question column and an expected_answer, answer or solution column).")
    return out
