"""A chat-ratio sweep: a short run per ratio, each evaluated, and the ratios that no other beats on both sides.

    sweep = run_sweep(cfg, [0.1, 0.25, 0.5])    # what `qwen3-kit sweep x.yaml data.chat_ratio=0.1,0.25,0.5` runs

The sources are tokenized once for all points and every point's mix is drawn before the first trains; the base model
is evaluated once. A point is done when its `sweep_point.json` was written under the same settings (all but
tracking): a rerun skips it. How to read the front: docs/data.md.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from kit.config import Config, ConfigError
from kit.config.schema import to_dict
from kit.errors import KitError
from kit.evaluation.markdown import cell, markdown_table

GAIN, RETENTION = "math_gain", "instructions_change"  # the front's axes, higher better on each
SWEPT = "data.chat_ratio"
POINT_FILE = "sweep_point.json"  # in a point's run folder: its row, and the settings it was made under


class SweepError(KitError):
    """A sweep that cannot run as asked; the message says what to write instead."""


@dataclass
class Sweep:
    folder: Path
    ratios: list[float]  # asked, ascending
    points: list[dict] = field(default_factory=list)  # one row per finished ratio (`point_row`)
    base: dict = field(default_factory=dict)  # the base model's evaluation (its metrics)
    interrupted: bool = False  # a point's training was stopped (SIGTERM, Ctrl-C): rerun to continue
    signal: int = 0

    @property
    def front(self) -> list[float]:
        return [p["chat_ratio"] for p in self.points if p["on_front"]]


def split_ratios(settings: list[str]) -> tuple[list[float], list[str]]:
    """(the ratios of `data.chat_ratio=0.1,0.25,0.5`, the other settings); SweepError without two ratios or more."""
    swept = [o for o in settings if o.partition("=")[0].strip() == SWEPT]
    rest = [o for o in settings if o not in swept]
    if len(swept) != 1:
        raise SweepError(f"name the ratios to compare once, e.g. {SWEPT}=0.1,0.25,0.5.")
    try:
        ratios = sorted({float(v) for v in swept[0].partition("=")[2].split(",") if v.strip()})
    except ValueError:
        raise SweepError(f"{swept[0]}: the ratios are numbers separated by commas, e.g. {SWEPT}=0.1,0.25,0.5.") \
            from None
    if len(ratios) < 2:
        raise SweepError(f"{swept[0]}: a sweep compares two ratios or more, e.g. {SWEPT}=0.1,0.25,0.5.")
    return ratios, rest


def sweep_folder(cfg: Config) -> tuple[Path, str]:
    """The sweep's folder and the name its points start with."""
    name = cfg.train.run_name or "ratio"
    return Path(cfg.train.output_dir) / f"{name}-sweep", name


def point_config(cfg: Config, ratio: float) -> Config:
    """The config of the point at `ratio`: its own run folder in the sweep's, the shared pools, the sweep's group."""
    from kit.config.checks import problems

    folder, name = sweep_folder(cfg)
    point = copy.deepcopy(cfg)
    point.data.chat_ratio, point.data.cache_pools = ratio, True
    point.train.output_dir, point.train.run_name = str(folder), f"{name}-chat{ratio:g}"
    point.tracking.group = cfg.tracking.group or folder.name
    if found := problems(point):
        raise ConfigError(f"{SWEPT}={ratio:g}: " + "; ".join(found))
    return point


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other matches or beats on both coordinates while beating on one (higher is better).

    >>> pareto_front([(0.1, -0.2), (0.05, 0.0), (0.0, -0.1), (0.1, -0.2)])
    [0, 1, 3]"""
    return [i for i, (x, y) in enumerate(points)
            if not any(a >= x and b >= y and (a, b) != (x, y) for a, b in points)]


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 4)


def _mean(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round((a + b) / 2, 4)


def point_row(ratio: float, run: Path, reports: dict, records: list[dict], data_report: dict, drop: float) -> dict:
    """A point's row: its mix, its gains over the base, whether its switch held (within `drop` of the base's) and the
    eval losses and switch at step 0 and at the end; `on_front` is set by `mark_front`."""
    from kit.training.metrics import broken_switch, eval_curves, switch_curve

    base, tuned, mix = reports["base"], reports["tuned"], data_report["mix"]
    ends = {key: {"step_0": curve[0][1] if curve[0][0] == 0 else None, "end": curve[-1][1]}
            for key, curve in (eval_curves(records) | {"": switch_curve(records)}).items() if curve}
    modes = ("thinking_on", "thinking_off")
    instructions = [_mean(*(r[f"instructions_{m}"] for m in modes)) for r in (tuned, base)]
    return {
        "chat_ratio": ratio, "run": str(run), "steps": max((r["step"] for r in records), default=0),
        "chat_share_rows": mix["chat_share_rows"], "chat_share_trained_tokens": mix["chat_share_trained_tokens"],
        "math": tuned["math_thinking_on"], GAIN: _minus(tuned["math_thinking_on"], base["math_thinking_on"]),
        "instructions": instructions[0], RETENTION: _minus(*instructions),
        **{f"switch_{m}": tuned[f"switch_{m}"] for m in modes},
        "switch_kept": not broken_switch(records, drop) and all(
            tuned[f"switch_{m}"] >= base[f"switch_{m}"] - drop for m in modes
            if None not in (tuned[f"switch_{m}"], base[f"switch_{m}"])),
        "switch_training": ends.pop("", None), "eval_loss": ends,
        "n_math": tuned["n_math"], "n_instructions": tuned["n_instructions"],
        "on_front": False,
    }


def mark_front(points: list[dict]) -> None:
    """Set each row's `on_front`; rows missing an axis (that part was not evaluated) are never on it."""
    ranked = [p for p in points if p[GAIN] is not None and p[RETENTION] is not None]
    on = {id(ranked[i]) for i in pareto_front([(p[GAIN], p[RETENTION]) for p in ranked])}
    for p in points:
        p["on_front"] = id(p) in on


def _identity(cfg: Config, *sections: str) -> dict:
    """The config sections a saved result depends on (none named: all but tracking and the sweep's location)."""
    tree = to_dict(cfg)
    tree["train"].pop("output_dir")
    return {k: v for k, v in tree.items() if k in sections or (not sections and k != "tracking")}


BASE_SECTIONS = ("model", "eval", "data")  # what the base model's evaluation depends on (data: its held-out math)


def _saved(path: Path, identity: dict) -> dict | None:
    """A saved row or base report, if it was made under the same settings (`identity`); else None: redo it."""
    from kit.files import read_cache

    saved = read_cache(path)
    return saved["value"] if isinstance(saved, dict) and saved.get("settings") == identity else None


def _save(path: Path, identity: dict, value: dict) -> None:
    from kit.files import write_atomic

    write_atomic(path, json.dumps({"settings": identity, "value": value}, indent=2, ensure_ascii=False))


def prepare_points(points: list[Config], *, progress: bool = True) -> list[dict]:
    """Each point's data report, its mix prepared for training; ratios the data cannot keep stop the sweep first."""
    from kit.data import prepare_data
    from kit.data.prepare import Shortfall
    from kit.evaluation.scores import held_out_rows
    from kit.training.backends import load_tokenizer
    from kit.training.sft import mix_epochs

    tokenizer, reports, short = load_tokenizer(points[0]), [], []
    for point in points:
        try:
            reports.append(prepare_data(point, tokenizer, epochs=mix_epochs(point), progress=progress).report)
        except Shortfall as e:
            short.append(f"  {SWEPT}={point.data.chat_ratio:g}: {e}")
            continue
        if point.eval.math == "heldout" and point.eval.n_math and not held_out_rows(reports[-1]):
            short.append(f"  {SWEPT}={point.data.chat_ratio:g}: reads no reasoning row, so no held-out problem for "
                         "eval.math=heldout to score; drop this ratio, or set eval.math to math500, gsm8k or a file.")
    if short:
        raise SweepError(f"{len(short)} of the {len(points)} ratios cannot be trained as asked, so nothing was "
                         "trained:\n" + "\n".join(short))
    return reports


def plan_sweep(cfg: Config, ratios: list[float], *, progress: bool = True) -> str:
    """What the sweep will cost, before it starts (mixes, steps, evaluation, VRAM); prepares every point's data."""
    import torch

    from kit.models.memory import estimate_for
    from kit.training.sft import mix_epochs, total_steps

    points = [point_config(cfg, r) for r in ratios]  # every ratio's config checked before anything is tokenized
    mixes = [report["mix"] for report in prepare_points(points, progress=progress)]
    steps = [total_steps(p, m["train_rows"], mix_epochs(p)) for p, m in zip(points, mixes, strict=True)]
    t, e = cfg.train, cfg.eval
    lines = [f"sweep: {len(ratios)} runs at {SWEPT} {', '.join(f'{r:g}' for r in ratios)} (by {cfg.data.ratio_by}), "
             f"into {sweep_folder(cfg)[0]}",
             f"  {'chat_ratio':>10}{'reasoning rows':>16}{'chat rows':>11}{'chat of rows':>14}"
             f"{'chat of trained tokens':>24}{'steps':>8}"]
    lines += [f"  {r:>10g}{m['reasoning_rows']:>16,}{m['chat_rows']:>11,}{m['chat_share_rows']:>14.1%}"
              f"{m['chat_share_trained_tokens']:>24.1%}{s:>8,}" for r, m, s in zip(ratios, mixes, steps, strict=True)]
    vram = estimate_for(cfg) if torch.cuda.is_available() else None
    lines += [f"cost: {len(ratios)} runs x {'/'.join(str(s) for s in sorted(set(steps)))} steps = {sum(steps):,} "
              f"optimizer steps of {t.per_device_train_batch_size * t.gradient_accumulation_steps} rows; then the "
              f"base model once and each run generate {e.n_math} math problems and {e.n_instructions or 'all'} "
              f"instructions, thinking on and off, up to {e.max_new_tokens} new tokens each"
              + (f"; VRAM per run: {vram}" if vram else ""),
              "time: measured on the first point and printed after it (the runs go one after another)"]
    return "\n".join(lines)


def _check_trained_as(point: Config) -> None:
    """Refuse a point's run folder trained under other settings (anything but eval and tracking)."""
    from kit.training.runs import NOT_IDENTITY, config_changes, has_adapter, newest_checkpoint

    run = Path(point.train.output_dir) / point.train.run_name
    if not (run / "config.yaml").is_file() or not (has_adapter(run) or newest_checkpoint(run)):
        return
    changes = config_changes(run, point)
    shaping = sorted(k for k in changes if not k.startswith(("eval.", "tracking.")) and k not in NOT_IDENTITY
                     and k != "train.output_dir")
    if shaping:
        then = "; ".join(f"{k} {changes[k][0]!r} then, {changes[k][1]!r} now" for k in shaping[:4])
        raise SweepError(f"{run} was trained with other settings ({then}), so it is not this sweep's point at "
                         f"{SWEPT}={point.data.chat_ratio:g}; rerun the sweep with the settings it was made with, "
                         "name a new sweep (train.run_name=...), or remove that folder to train it again.")


def _run_point(point: Config, base: dict | None, progress: bool) -> tuple[dict | None, dict | None, int]:
    """Train and evaluate one point: (its row, or None when stopped; the base model's report; the stopping signal)."""
    from kit.evaluation.scores import REWRITE_REPORT, evaluate_run
    from kit.files import read_json
    from kit.machine import release_memory
    from kit.training.metrics import read_metrics
    from kit.training.sft import train

    result = train(point, progress=progress)
    if result.interrupted:
        return None, base, result.signal
    release_memory()  # the trained model, before evaluation loads its own (which it gives back itself)
    run = result.run_dir
    reports = evaluate_run(run, point, progress=progress, base=base)
    row = point_row(point.data.chat_ratio, run, reports, read_metrics(run),
                    read_json(run / "data_report.json", REWRITE_REPORT), point.train.switch_drop)
    _save(run / POINT_FILE, _identity(point), row)
    return row, {k: v for k, v in reports["base"].items() if k != "math_source"}, 0


def run_sweep(cfg: Config, ratios: list[float], *, progress: bool = True) -> Sweep:
    """Train and evaluate a run per ratio, printing the plan and the time left, writing table and plot; rerun to
    continue."""
    sweep = Sweep(sweep_folder(cfg)[0], sorted(ratios))
    print(plan_sweep(cfg, sweep.ratios, progress=progress), flush=True)
    for ratio in sweep.ratios:  # before anything trains
        _check_trained_as(point_config(cfg, ratio))
    base_file, base_identity = sweep.folder / "base_eval.json", _identity(cfg, *BASE_SECTIONS)
    base, started, ran = _saved(base_file, base_identity), time.monotonic(), 0
    for k, ratio in enumerate(sweep.ratios):
        point = point_config(cfg, ratio)
        row = _saved(Path(point.train.output_dir) / point.train.run_name / POINT_FILE, _identity(point))
        if row is None:  # not done, or done under other settings
            row, base, sweep.signal = _run_point(point, base, progress)
            if row is None:
                sweep.interrupted = True
                break
            _save(base_file, base_identity, base)
            ran += 1
        else:
            print(f"sweep: {SWEPT}={ratio:g} was trained and evaluated before, with these settings: kept")
        sweep.points.append(row)
        sweep.base = {key: value for key, value in (base or {}).items() if key != "details"}
        mark_front(sweep.points)
        write_sweep(sweep)
        _say_progress(sweep, k, ran, time.monotonic() - started)
    return sweep


def _say_progress(sweep: Sweep, k: int, ran: int, seconds: float) -> None:
    from kit.training.trainer import duration

    left = len(sweep.ratios) - k - 1
    rest = f"; about {duration(seconds / ran * left)} for the {left} left, as those run here took" \
        if left and ran else ""
    print(f"sweep: chat_ratio {sweep.ratios[k]:g} done ({k + 1} of {len(sweep.ratios)}, {duration(seconds)} so far)"
          f"{rest}", flush=True)


def format_table(sweep: Sweep) -> str:
    """The sweep as a Markdown table, with the base model's figures and the ratios on the front named."""
    sources = list(dict.fromkeys(s for p in sweep.points for s in p["eval_loss"]))
    head = ["chat_ratio", "chat % rows", "chat % trained tokens", "steps", "math gain", "instructions change",
            "switch on / off", "switch while training: step 0 -> end",
            *[f"eval loss {s}: step 0 -> end" for s in sources], "front"]
    lines = [f"# Chat-ratio sweep: {sweep.folder}", ""]
    if b := sweep.base:
        kept = _mean(b["instructions_thinking_on"], b["instructions_thinking_off"])
        lines += [f"Base model: math (thinking on) {cell(b['math_thinking_on'], '.3f')} of {b['n_math']} problems; "
                  f"instructions kept {cell(kept, '.3f')} "
                  f"(mean of thinking on and off) of {b['n_instructions']} prompts; switch on / off "
                  f"{cell(b['switch_thinking_on'], '.3f')} / {cell(b['switch_thinking_off'], '.3f')}.", ""]
    rows = []
    for p in sweep.points:
        losses = [p["eval_loss"].get(s) for s in sources]
        rows.append([
            f"{p['chat_ratio']:g}", f"{p['chat_share_rows']:.1%}", f"{p['chat_share_trained_tokens']:.1%}",
            p["steps"], cell(p[GAIN], "+.3f"), cell(p[RETENTION], "+.3f"),
            f"{cell(p['switch_thinking_on'], '.3f')} / {cell(p['switch_thinking_off'], '.3f')}"
            + ("" if p["switch_kept"] else " (broken)"),
            *[f"{v['step_0']:.3f} -> {v['end']:.3f}" if v and v["step_0"] is not None else "-"
              for v in [p.get("switch_training"), *losses]],
            "yes" if p["on_front"] else ""])
    lines.append(markdown_table(head, rows))
    front = ", ".join(f"{r:g}" for r in sweep.front) or "none yet"
    lines += ["", f"On the front (no other ratio is as good on math gain and on instructions change and better on "
                  f"one): {front}."]
    return "\n".join(lines)


def write_sweep(sweep: Sweep) -> None:
    """`sweep.json` (every row, the base, the front), `sweep.md` (the table) and `front.png` (the plot)."""
    from kit.files import write_atomic, writing_into
    from kit.plots import ratio_front

    with writing_into(sweep.folder):
        sweep.folder.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in dataclasses.asdict(sweep).items() if k not in ("interrupted", "signal")}
        data |= {"folder": str(sweep.folder), "front": sweep.front}
        write_atomic(sweep.folder / "sweep.json", json.dumps(data, indent=2, ensure_ascii=False))
        write_atomic(sweep.folder / "sweep.md", format_table(sweep) + "\n")
        ratio_front(sweep.points).savefig(sweep.folder / "front.png", dpi=120)
