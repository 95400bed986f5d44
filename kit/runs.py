"""Run folders: where a run lives, what it holds, and finding one that has finished.

    <train.output_dir>/<train.run_name>/
        config.yaml  data_report.json  logs/metrics.jsonl  checkpoints/checkpoint-<step>/  adapter/

`finished_run(cfg)` is how chat, export and evaluation (scripts and notebooks) find a trained adapter without
training anything.
"""

from __future__ import annotations

import time
from pathlib import Path

from kit.config import Config
from kit.errors import KitError


def run_folder(cfg: Config, state=None) -> Path:
    """`train.output_dir/train.run_name`; without a name, a timestamp decided by the main process and shared with
    the others (`state`: accelerate's PartialState), which would otherwise each stamp their own second."""
    name = cfg.train.run_name or time.strftime("run-%Y%m%d-%H%M%S")
    if not cfg.train.run_name and state is not None and state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        name = broadcast_object_list([name], from_process=0)[0]
    return Path(cfg.train.output_dir) / name


def checkpoint_step(checkpoint: str | Path) -> int:
    """The optimizer step a `checkpoint-<step>` folder was saved at."""
    return int(Path(checkpoint).name.rsplit("-", 1)[-1])


def newest_checkpoint(run: Path) -> Path | None:
    """The highest-step complete checkpoint of a run (one with its trainer state written), or None."""
    done = [p for p in (run / "checkpoints").glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(done, key=checkpoint_step, default=None)


def has_adapter(run: Path) -> bool:
    return (run / "adapter" / "adapter_config.json").is_file()


def finished_run(cfg: Config) -> Path:
    """The run folder `cfg` trains into, once it holds its adapter; without `train.run_name`, the newest finished
    run under `train.output_dir`. Raises KitError saying how to train it when there is none."""
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
