"""Did math improve, and did the thinking switch and instruction following survive? The base against the tuned.

    reports = evaluate_run("runs/qwen3-14b-math", cfg)      # what scripts/eval.py runs; writes <run>/eval.json

A generator is any `fn(conversations, thinking) -> list[Reply]` (the local model or an OpenAI-compatible server), so
the scores are the same whatever produced the text. Every prompt is generated thinking on and off; docs/evaluation.md
says what each score counts.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from kit.errors import KitError
from kit.evaluation.answers import math_correct
from kit.files import read_json, write_atomic, writing_into
from kit.inference.generate import Reply
from kit.machine import release_memory

Generator = Callable[[list[list[dict]], bool], list[Reply]]
THINK_TAGS = ("<think>", "</think>")
METRICS = {  # metric -> the count it is a share of
    "math_thinking_on": "n_math", "math_thinking_off": "n_math",
    "switch_thinking_on": "n_prompts", "switch_thinking_off": "n_prompts",
    "instructions_thinking_on": "n_instructions", "instructions_thinking_off": "n_instructions",
    "single_instructions_thinking_on": "n_checks", "single_instructions_thinking_off": "n_checks",
}


REWRITE_REPORT = "run the run's train command again: it writes the report again and, the run being complete, trains " \
    "nothing."


class EvalError(KitError, RuntimeError):
    pass


def switch_ok(on: Reply, off: Reply) -> tuple[bool, bool]:
    """(thinking-on reply is right, thinking-off reply is right)."""
    on_ok = on.closed and bool(on.reasoning.strip()) and bool(on.answer.strip())
    off_ok = (not off.reasoning and bool(off.answer.strip())
              and not any(tag in off.text for tag in THINK_TAGS))
    return on_ok, off_ok


def switch_shares(on: list[Reply], off: list[Reply]) -> dict:
    """The share of replies that follow the switch in each mode (Qwen's ThinkFollow, per mode), pairwise `switch_ok`."""
    switch = [switch_ok(a, b) for a, b in zip(on, off, strict=True)]
    return {f"switch_thinking_{mode}": _share([s[mode == "off"] for s in switch]) for mode in ("on", "off")}


def _share(flags: list[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def _reply(r: Reply) -> dict:
    return {"reasoning": r.reasoning, "answer": r.answer, "closed": r.closed}


def evaluate(generate: Generator, math_rows: list[dict], instructions: list) -> dict:
    """Score one model on `math_rows` (problem, expected_answer) and `instructions`: METRICS, counts, per-prompt
    details."""
    from kit.evaluation.instructions import follows

    prompts = [[{"role": "user", "content": t}] for t in
               [r["problem"] for r in math_rows] + [i.prompt for i in instructions]]
    on = generate(prompts, True) if prompts else []
    off = generate(prompts, False) if prompts else []
    n = len(math_rows)
    correct = {mode: [math_correct(r.answer, row["expected_answer"]) for r, row in zip(replies[:n], math_rows,
                                                                                        strict=True)]
               for mode, replies in (("on", on), ("off", off))}
    kept = {mode: [follows(i, r.answer) for i, r in zip(instructions, replies[n:], strict=True)]
            for mode, replies in (("on", on), ("off", off))}
    report = {"n_math": n, "n_instructions": len(instructions), "n_prompts": len(prompts),
              "n_checks": sum(len(i.checks) for i in instructions), **switch_shares(on, off)}
    for mode in ("on", "off"):
        report[f"math_thinking_{mode}"] = _share(correct[mode])
        report[f"instructions_thinking_{mode}"] = _share([all(k) for k in kept[mode]])
        report[f"single_instructions_thinking_{mode}"] = _share([x for k in kept[mode] for x in k])
    report["details"] = {
        "math": [{"problem": row["problem"], "expected": row["expected_answer"],
                  "thinking_on": _reply(a) | {"correct": c_on}, "thinking_off": _reply(b) | {"correct": c_off}}
                 for row, a, b, c_on, c_off in zip(math_rows, on[:n], off[:n], correct["on"], correct["off"],
                                                   strict=True)],
        "instructions": [{"id": i.id, "prompt": i.prompt, "checks": i.checks,
                          "thinking_on": _reply(a) | {"kept": k_on}, "thinking_off": _reply(b) | {"kept": k_off}}
                         for i, a, b, k_on, k_off in zip(instructions, on[n:], off[n:], kept["on"], kept["off"],
                                                         strict=True)],
    }
    return report


def compare(reports: dict[str, dict]) -> str:
    """A side-by-side table of several models' reports (e.g. base and tuned), with n and what generated each."""
    names = list(reports)
    first = next(iter(reports.values()))
    lines = [f"{'metric':<34}" + "".join(f"{n:>10}" for n in names) + f"{'n':>8}", "-" * (42 + 10 * len(names))]
    for metric, count in METRICS.items():
        values = [reports[n][metric] for n in names]
        lines.append(f"{metric:<34}" + "".join(f"{'-' if v is None else f'{v:.3f}':>10}" for v in values)
                     + f"{first[count]:>8}")
    lines += [f"{name}: {report['model']}" for name, report in reports.items() if "model" in report]
    return "\n".join(lines)


def show_replies(reports: dict[str, dict], section: str = "math", limit: int = 3) -> str:
    """The first `limit` prompts of a section (math | instructions) with every model's replies in full."""
    first = next(iter(reports.values()))
    blocks = []
    for k, item in enumerate(first["details"][section][:limit]):
        wanted = f"expected {item['expected']}" if section == "math" else f"checks {json.dumps(item['checks'])}"
        lines = [f"=== {item['problem'] if section == 'math' else item['prompt']}", f"    ({wanted})"]
        for name, report in reports.items():
            entry = report["details"][section][k]
            for mode in ("thinking_on", "thinking_off"):
                reply = entry[mode]
                verdict = ("correct" if reply["correct"] else "wrong") if section == "math" else ", ".join(
                    f"{c['check']} {'kept' if k else 'broken'}" for c, k in zip(item["checks"], reply["kept"],
                                                                               strict=True))
                lines.append(f"--- {name}, {mode.replace('_', ' ')}: {verdict}")
                if reply["reasoning"] or not reply["closed"]:
                    lines.append(f"[reasoning{'' if reply['closed'] else ', never closed'}]\n{reply['reasoning']}")
                lines.append(f"[answer]\n{reply['answer']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def local_generator(model, tokenizer, *, max_new_tokens: int, seed: int = 0, batch_size: int = 8,
                    progress: str | None = None) -> Generator:
    """A generator over a loaded model: `generate_batched` with a fixed seed, budget and batch size."""
    from kit.inference.generate import generate_batched

    def run(conversations: list[list[dict]], thinking: bool) -> list[Reply]:
        desc = f"{progress}, thinking {'on' if thinking else 'off'}" if progress else None
        return generate_batched(model, tokenizer, conversations, batch_size=batch_size, progress=desc,
                                thinking=thinking, max_new_tokens=max_new_tokens, seed=seed)

    return run


def tuned_adapter(run_dir: Path, choice: str) -> Path:
    """The adapter to evaluate: the run's final one, its newest checkpoint, or a folder; never none at all."""
    from kit.training.runs import has_adapter, newest_checkpoint

    if choice not in ("final", "newest"):
        return Path(choice).expanduser()
    newest = newest_checkpoint(run_dir)
    if choice == "newest":
        if newest is None:
            raise EvalError(f"{run_dir} has no checkpoint yet (checkpoints/checkpoint-N), so there is nothing "
                            "tuned to evaluate.")
        return newest
    if not has_adapter(run_dir):
        hint = f"; eval.adapter=newest evaluates its newest checkpoint ({newest.name})" if newest else ""
        raise EvalError(f"{run_dir} has no adapter/ (training did not finish), so there is nothing tuned to "
                        f"compare with the base{hint}.")
    return run_dir / "adapter"


def held_out_rows(report: dict) -> int:
    """The reasoning problems a data report counts as held out of training: what eval.math=heldout scores."""
    return report.get("sources", {}).get("reasoning", {}).get("dropped", {}).get("filtered_held_out", 0)


def _check_heldout(run_dir: Path, cfg) -> dict:
    """The held-out slice is only held out if the run trained without it: its config and data report say so."""
    from kit.config import load_config

    if load_config(run_dir / "config.yaml").data.reasoning != cfg.data.reasoning:
        raise EvalError("data.reasoning differs from the run's config.yaml, so its held-out problems are not the "
                        "ones kept out of this run's training; evaluate without data.* overrides.")
    report_path = run_dir / "data_report.json"
    report = read_json(report_path, REWRITE_REPORT) if report_path.is_file() else {"sources": {}}
    held = held_out_rows(report)
    # A GRPO run reads only the problems it needs, maybe none held out, and says what it left out (kit.data.prompts).
    declared = report.get("heldout_share") == cfg.data.reasoning.heldout > 0
    if not held and not declared:
        raise EvalError(f"{report_path} counts no held-out problem (the run predates held-out slices, or its "
                        "source is too small), so any problem may have been trained on; set eval.math to "
                        "math500, gsm8k, aime24, aime25 or a file.")
    return {"source": cfg.data.reasoning.path, "heldout_share": cfg.data.reasoning.heldout,
            "held_out_rows_in_training_source": held, "training_data_fingerprint": report.get("fingerprint")}


def _say_if_short(what: str, got: int, asked: int) -> None:
    if asked and got < asked:
        print(f"{what}: {got} available, fewer than the {asked} asked; scoring {got}.")


def _endpoint_generator(which: str, cfg, progress: bool, keep: Path) -> tuple[Generator, str] | None:
    """(generator, what it is) for eval.endpoint (tuned) or eval.base_endpoint, keeping replies in `keep`; None if
    unset."""
    e = cfg.eval
    url, name = (e.base_endpoint, e.base_endpoint_model) if which == "base" else (e.endpoint, e.endpoint_model)
    if not url:
        return None
    from kit.inference.endpoint import endpoint_generator, served_model

    name = served_model(url, name)
    keep.parent.mkdir(parents=True, exist_ok=True)
    return (endpoint_generator(url, name, max_new_tokens=e.max_new_tokens, seed=e.seed, concurrency=e.batch_size,
                               progress=which if progress else None, timeout=e.request_timeout, keep=keep),
            f"{name} at {url}")


def _reports(cfg, adapter: Path, math: list[dict], instructions: list, progress: bool, base: dict | None,
             kept: dict[str, Path]) -> dict[str, dict]:
    """The base's (`base` when given) and the tuned model's reports, from endpoints or one local load: the adapter
    disabled for the base, then merged for the tuned (decoding at a merged model's speed)."""
    from contextlib import nullcontext

    from kit.hub import resolve_model
    from kit.inference.generate import load_for_inference, merge_for_decoding

    e, reports, model = cfg.eval, {"base": base} if base else {}, None
    for which in [which for which in ("base", "tuned") if which not in reports]:
        generate, where = _endpoint_generator(which, cfg, progress, kept[which]) or (None, "")
        local = generate is None
        if local and model is None:
            base_dir = resolve_model(cfg.model)
            model, tokenizer = load_for_inference(adapter, base=base_dir, backend=cfg.train.backend,
                                                  load_in_4bit=cfg.model.load_in_4bit)
        if local:
            if which == "tuned":
                merge_for_decoding(model)  # the base's replies are done
            generate = local_generator(model, tokenizer, max_new_tokens=e.max_new_tokens, seed=e.seed,
                                       batch_size=e.batch_size, progress=which if progress else None)
            where = (f"{base_dir} (local, adapter disabled)" if which == "base" else
                     f"{adapter} on {base_dir} (local, {type(model).__name__})")
        with model.disable_adapter() if local and which == "base" else nullcontext():
            reports[which] = {"model": where, **evaluate(generate, math, instructions)}
    return reports


def eval_set(cfg) -> tuple[list[dict], list]:
    """The math problems and instructions `cfg.eval` names, said where fewer exist than asked for."""
    from kit.evaluation.benchmarks import math_rows
    from kit.evaluation.instructions import load_instructions

    e = cfg.eval
    math = math_rows(cfg, e.n_math) if e.n_math else []
    _say_if_short(f"eval.math {e.math}", len(math), e.n_math)
    instructions = load_instructions(e.instructions, e.n_instructions) if e.instructions else []
    _say_if_short(f"eval.instructions {e.instructions}", len(instructions), e.n_instructions)
    return math, instructions


def evaluate_run(run_dir: str | Path, cfg, *, progress: bool = True, base: dict | None = None) -> dict[str, dict]:
    """Evaluate the base model and the run's tuned adapter as `cfg.eval` says and write `<run>/eval.json`; `base`, a
    report from a run with the same model and eval (a sweep's), is reused. Raises EvalError in one sentence."""
    run_dir = Path(run_dir)
    e = cfg.eval
    adapter = tuned_adapter(run_dir, e.adapter)
    if not e.endpoint:  # loaded here: a damaged file is named now, not after the base model's replies
        from kit.training.runs import verify_adapter

        verify_adapter(adapter)
    math_info = _check_heldout(run_dir, cfg) if e.math == "heldout" and e.n_math else {"source": e.math}
    math, instructions = eval_set(cfg)
    if bool(e.endpoint) != bool(e.base_endpoint):
        print("note: one model is generated locally and the other by a server: engine and precision differ.")
    kept = {which: run_dir / "logs" / f"eval_{which}_replies.jsonl" for which in ("base", "tuned")}
    reports = {which: report | {"math_source": math_info}
               for which, report in _reports(cfg, adapter, math, instructions, progress, base, kept).items()}
    release_memory()  # the model loaded for both went with _reports' frame: its memory back before the next load
    with writing_into(run_dir):
        write_atomic(run_dir / "eval.json", json.dumps(reports, indent=2, ensure_ascii=False))  # a crash keeps the last
    for path in kept.values():  # scored: a later evaluation asks the server afresh (it may serve a newer export)
        path.unlink(missing_ok=True)
    return reports
