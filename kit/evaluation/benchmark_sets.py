"""The published math benchmarks the kit scores, and where they are: a table kit.evaluation.benchmarks reads and config
validation checks `eval.math` against."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Benchmark:
    repo: str  # the ModelScope data set
    split: str
    subset: str = ""


BENCHMARKS = {  # ids and splits as EvalScope 1.14's adapters read them
    "math500": Benchmark("AI-ModelScope/MATH-500", "test"),  # 500 problems; `problem`, `answer`
    "gsm8k": Benchmark("AI-ModelScope/gsm8k", "test", "main"),  # 1,319; `question`, `answer` ending "#### 42"
    "aime24": Benchmark("evalscope/aime24", "test"),  # 30; `problem`, `answer` or a boxed `solution`
    "aime25": Benchmark("evalscope/aime25", "test"),  # 30
}
