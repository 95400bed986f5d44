"""torchrun with 2 processes (gloo on CPU): data parallel, one run folder, the single-process adapter format."""

import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from tests.conftest import ROOT


def test_torchrun_two_processes_trains_one_run(smoke_run, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    args = [str(torchrun), "--nproc_per_node", "2", "scripts/train.py", "--config", "configs/smoke.yaml",
            "train.max_steps=6", f"train.output_dir={tmp_path}", "train.run_name=", "train.save_steps=3",
            "train.eval_steps=3"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (run,) = tmp_path.iterdir()  # one folder: its timestamped name decided by rank 0 and shared
    assert run.name.startswith("run-")
    assert result.stdout.count("done: 6 steps") == 1  # rank 0 reports
    assert result.stdout.count("plan:") == 1
    records = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]  # logged once, not once per rank
    # Two processes: each step saw 2 x the rows of a single-process step.
    single = 6 * 8 / json.loads((run / "data_report.json").read_text())["mix"]["train_rows"]
    assert records[-1]["epoch"] > 1.9 * single
    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    reference = load_file(smoke_run / "adapter" / "adapter_model.safetensors")
    assert {k: v.shape for k, v in adapter.items()} == {k: v.shape for k, v in reference.items()}
    assert sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-3", "checkpoint-6"]
