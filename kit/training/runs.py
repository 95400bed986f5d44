"""Run folders: where a run lives, what it holds, and finding one that has finished.

    <train.output_dir>/<train.run_name>/
        config.yaml  data_report.json  logs/metrics.jsonl  logs/resumes.jsonl  checkpoints/checkpoint-<step>/  adapter/

A resume with other settings is recorded in logs/resumes.jsonl, and refused where it would continue a different run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.config import Config, save_config
from kit.config.schema import flatten, to_dict
from kit.errors import KitError
from kit.files import append_line, atomic_folder, read_json, write_atomic


def run_folder(cfg: Config, state=None) -> Path:
    """`train.output_dir/train.run_name`; without a name a timestamp, the main process's shared with the others."""
    name = cfg.train.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    if not cfg.train.run_name and state is not None and state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        name = broadcast_object_list([name], from_process=0)[0]
    return Path(cfg.train.output_dir) / name


def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step a `checkpoint-<step>` folder was saved at."""
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def _complete(checkpoint: Path) -> bool:
    """A checkpoint whose trainer state (written last) reads back whole, and whose adapter and optimizer files are
    whole: not cut by a kill, a full disk or a bad copy."""
    import zipfile

    try:
        state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    adapter_whole = not (checkpoint / "adapter_model.safetensors").exists() or adapter_problem(checkpoint) is None
    optimizer = checkpoint / "optimizer.pt"  # torch saves a zip archive: a cut one has no central directory
    return isinstance(state, dict) and adapter_whole and (not optimizer.exists() or zipfile.is_zipfile(optimizer))


def newest_checkpoint(run: Path) -> Path | None:
    """The highest-step complete checkpoint of a run (`_complete`), or None."""
    return max((p for p in (run / "checkpoints").glob("checkpoint-*") if _complete(p)), key=checkpoint_step,
               default=None)


def has_adapter(run: Path) -> bool:
    return (run / "adapter" / "adapter_config.json").is_file()


def adapter_problem(folder: Path) -> str | None:
    """What is wrong with a LoRA adapter folder's files (its config not JSON, its weights missing, not safetensors or
    shorter than their header says: a copy cut short, a disk that filled), read without loading it; None if whole."""
    import struct

    from kit.export.shards import read_header

    try:
        config = read_json(folder / "adapter_config.json", "")
    except KitError as e:
        return str(e)
    if not isinstance(config, dict) or "r" not in config:
        return f"{folder / 'adapter_config.json'} is not a LoRA adapter's config (no rank r)"
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        return f"{weights} is missing"
    try:
        entries, _ = read_header(weights)
        end = max((e.end for e in entries.values()), default=0)
    except (ValueError, KeyError, TypeError, AttributeError, struct.error):  # bad JSON is a ValueError too
        return f"{weights} is not a safetensors file (it is damaged)"
    if weights.stat().st_size < end or not entries:
        return f"{weights} is cut short ({weights.stat().st_size:,} of {end:,} bytes)"
    return None


def verify_adapter(folder: Path) -> None:
    """Raise KitError, naming the file and the fix, unless `folder` holds a whole LoRA adapter (`adapter_problem`)."""
    if problem := adapter_problem(folder):
        run = folder.parent
        fix = (f"run the train command of {run} again: it writes adapter/ again from the final checkpoint"
               if folder.name == "adapter" and (run / "config.yaml").is_file() else
               "copy or save the adapter again from where it was made")
        raise KitError(f"{problem}; {fix}.")


def finished_run(cfg: Config) -> Path:
    """The run folder `cfg` trains into once it holds its adapter (no run_name: the newest finished); else KitError."""
    if cfg.train.run_name:
        run = Path(cfg.train.output_dir) / cfg.train.run_name
        candidates = [run] if has_adapter(run) else []
    else:
        candidates = sorted((p for p in Path(cfg.train.output_dir).glob("*") if has_adapter(p)),
                            key=lambda p: p.stat().st_mtime)
    if not candidates:
        where = Path(cfg.train.output_dir) / (cfg.train.run_name or "*")
        raise KitError(f"no finished run at {where}: train it first (`python scripts/train.py --config <file>`, or "
                       "notebook 04), with the same train.output_dir and train.run_name.")
    return candidates[-1]


@contextmanager
def run_lock(run: Path, doing: str = "trained") -> Iterator[None]:
    """One process per run folder (training or exporting it): a second is refused with the first's PID and task. The
    lock (fcntl on `<run>/.lock`) dies with its holder, so a preempted run leaves none behind."""
    import fcntl

    run.mkdir(parents=True, exist_ok=True)
    with open(run / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            pid, _, held_for = handle.read().strip().partition(" ")
            raise KitError(f"{run} is being {held_for or 'trained'} by process {pid or '?'}; wait for it to end or "
                           "stop it" + (", or name a separate run (train.run_name, or grpo.run_name for GRPO)."
                                        if doing == "trained" else ".")) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()} {doing}")
        handle.flush()
        yield


# What makes a run what it is: resuming with any of these changed would continue a different run.
IDENTITY_PREFIXES = ("model.", "lora.", "data.")
GRPO_IDENTITY = ("model.", "lora.", "data.reasoning.")  # GRPO's prompts come from data.reasoning alone
NOT_IDENTITY = {"model.cache_dir", "data.num_proc"}
SHAPES = {"model.name", "lora.r", "lora.target_modules"}  # a run's weights cannot continue under other ones at all


def config_changes(run: Path, cfg: Config) -> dict[str, tuple]:
    """The keys whose values differ from the run's saved config.yaml: `{key: (saved, now)}` (keys both know)."""
    from kit.config.parse import read_yaml

    saved, now = flatten(read_yaml(run / "config.yaml")), flatten(to_dict(cfg))
    return {key: (saved[key], now[key]) for key in saved.keys() & now.keys() if saved[key] != now[key]}


def identity_changes(changes: dict[str, tuple], identity: tuple[str, ...] = IDENTITY_PREFIXES) -> list[str]:
    """The changed keys that make a resume meaningless (model, LoRA shape, data)."""
    return sorted(k for k in changes if k.startswith(identity) and k not in NOT_IDENTITY)


def keep_metrics_until(run: Path, step: int) -> None:
    """Drop the logged metrics after `step` and the end-of-training record: a resume from there writes them again."""
    from kit.training.metrics import read_metrics

    path = run / "logs" / "metrics.jsonl"
    if not path.is_file():
        return
    kept = [r for r in read_metrics(run) if r.get("step", 0) <= step and "train_runtime" not in r]
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))


def resume_point(cfg: Config, folder: Path) -> str | None:
    """The checkpoint to continue from (resume=never clears the run); a checkpoint cut short is removed."""
    if cfg.train.resume == "never":
        for stale in ("checkpoints", "adapter", "logs"):
            shutil.rmtree(folder / stale, ignore_errors=True)
        return None
    for partial in [p for p in (folder / "checkpoints").glob("checkpoint-*") if not _complete(p)]:
        shutil.rmtree(partial, ignore_errors=True)
    found = newest_checkpoint(folder) if cfg.train.resume == "auto" else Path(cfg.train.resume)
    return str(found) if found else None


def record_config(cfg: Config, folder: Path, resume: str | None,
                  identity: tuple[str, ...] = IDENTITY_PREFIXES) -> None:
    """config.yaml for a new run; a resumed one's changes go to logs/resumes.jsonl, `identity` changes are refused."""
    if not (folder / "config.yaml").is_file() or not (resume or has_adapter(folder)):
        save_config(cfg, folder / "config.yaml")
        return
    changes = config_changes(folder, cfg)
    blocking = identity_changes(changes, identity)
    reshaped = [k for k in blocking if k in SHAPES]
    if blocking and (reshaped or not cfg.train.allow_changes):
        shown = "; ".join(f"{k}: {changes[k][0]!r} then, {changes[k][1]!r} now" for k in blocking[:4])
        go_on = f" ({reshaped[0]} changes the weights' shape: no setting continues it)" if reshaped else \
            ", or train.allow_changes=true to continue it"
        raise KitError(f"{folder} was trained with other settings ({shown}); name a new run (train.run_name, or "
                       f"grpo.run_name for GRPO) or set train.resume=never to train this one again{go_on}.")
    if changes:
        step = checkpoint_step(resume) if resume else None
        print("changed since the run began: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items()))
        append_line(folder / "logs" / "resumes.jsonl",
                    {"step": step, "changed": {k: list(v) for k, v in changes.items()}})


CHECKPOINT_ONLY = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state*.pth", "scaler.pt")


def adapter_from_checkpoint(checkpoint: Path, run: Path) -> Path:
    """`<run>/adapter` from the final step's checkpoint (not its optimizer files), for a run killed during its final
    save."""
    skip = {p for pattern in CHECKPOINT_ONLY for p in checkpoint.glob(pattern)}
    with atomic_folder(run / "adapter") as tmp:
        for path in checkpoint.iterdir():
            if path.is_file() and path not in skip:
                shutil.copy2(path, tmp / path.name)
    return run / "adapter"
