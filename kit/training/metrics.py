"""What a run logged, read back: `<run>/logs/metrics.jsonl`, and the eval loss of each data source in it.

    curves = eval_curves(read_metrics("runs/smoke"))    # {"reasoning": [(0, 7.41), (25, 5.9), ...], "chat": ...}

The trainer evaluates each source of the eval set on its own (`eval_<source>_loss`: reasoning, chat, each of
data.sources) before the first step (step 0: the model as training found it, the reference line) and every
`train.eval_steps`; `eval_loss` is their mean over the eval rows. A chat loss that climbs while the reasoning loss
falls is the first sign that the mix is costing the model its chat. With them, `eval_switch`: the thinking switch
scored on a few short generations in both modes (kit.training.trainer.switch_check), step 0 being the base model's.
"""

from __future__ import annotations

import re
from pathlib import Path

from kit.files import read_jsonl

SOURCE_LOSS = re.compile(r"^eval_(.+)_loss$")
SWITCH = "eval_switch"


def source_key(name: str) -> str:
    """A source's name as its metrics spell it: `my-data.v2` -> `my_data_v2`."""
    return re.sub(r"\W+", "_", name)


def read_metrics(run: str | Path) -> list[dict]:
    """Every logged record of a run, in order (none before it logs); a cut-off last line is dropped."""
    return read_jsonl(Path(run) / "logs" / "metrics.jsonl", "remove that line (or the file: its records are for plots "
                      "and sweeps, not for resuming) and run again.")


def source_losses(logs: dict) -> dict[str, float]:
    """The per-source eval losses in one logged record: `{source: loss}`."""
    return {m.group(1): value for key, value in logs.items() if (m := SOURCE_LOSS.match(key))}


def eval_curves(records: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """Each source's eval loss over the steps, `{source: [(step, loss), ...]}`, from a run's records."""
    curves: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for source, loss in source_losses(record).items():
            curves.setdefault(source, []).append((record["step"], loss))
    return curves


def switch_curve(records: list[dict]) -> list[tuple[int, float]]:
    """The thinking switch's score over the steps, `[(step, share), ...]`, from a run's records."""
    return [(r["step"], r[SWITCH]) for r in records if SWITCH in r]


def broken_switch(records: list[dict], drop: float) -> str:
    """Why the switch counts as broken (its last score over `drop` below step 0's), or "" where it held or is
    unknown."""
    curve = switch_curve(records)
    if not curve or curve[0][0] != 0 or curve[-1][1] >= curve[0][1] - drop:
        return ""
    return (f"the thinking switch scored {curve[-1][1]:.2f} at step {curve[-1][0]}, down from {curve[0][1]:.2f} at "
            f"step 0 (the base model), more than train.switch_drop={drop:g}")
