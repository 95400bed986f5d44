import json
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from kit.backends import BackendError, check_adapter, linear_modules, pick_backend
from kit.qwen3 import PROJECTIONS
from tests.conftest import ROOT, run_script


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def test_smoke_run_learns_and_writes_a_complete_run_folder(smoke_run):
    losses = _losses(smoke_run)
    assert len(losses) == 100
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 1.0, f"the loss did not visibly fall: {first:.2f} -> {last:.2f}"
    assert (smoke_run / "config.yaml").is_file() and (smoke_run / "data_report.json").is_file()
    assert (smoke_run / "adapter" / "adapter_model.safetensors").is_file()
    assert (smoke_run / "adapter" / "tokenizer.json").is_file()
    checkpoints = sorted(p.name for p in (smoke_run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-100", "checkpoint-75"]  # every 25 steps, the newest 2 kept
    eval_lines = [line for line in (smoke_run / "logs/metrics.jsonl").read_text().splitlines() if "eval_loss" in line]
    assert len(eval_lines) == 4


def test_backend_choice():
    assert pick_backend("auto") == "hf"  # no CUDA GPU on this machine
    assert pick_backend("hf") == "hf"
    with pytest.raises(BackendError, match=r"train.backend=unsloth needs a CUDA GPU .* use train.backend=hf"):
        pick_backend("unsloth")


def test_lora_targets_are_checked_against_the_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    from kit.backends import check_targets

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert linear_modules(model) == sorted(PROJECTIONS)
    with pytest.raises(BackendError, match=r"\['qkv_proj'\], which this model does not have; its linear layers are"):
        check_targets(model, ["q_proj", "qkv_proj"])


def test_continuing_an_adapter_checks_rank_alpha_and_targets(smoke_run, smoke_cfg):
    adapter = smoke_run / "adapter"
    check_adapter(smoke_cfg(f"model.adapter={adapter}"))
    with pytest.raises(BackendError, match=r"the adapter has r=16 but lora.r is 8; the adapter has alpha=32 but"):
        check_adapter(smoke_cfg(f"model.adapter={adapter}", "lora.r=8", "lora.alpha=8"))


def test_continue_training_an_adapter(smoke_run, tmp_path):
    from kit.config import load_config
    from kit.train import train

    cfg = load_config(ROOT / "configs/smoke.yaml", [f"model.adapter={smoke_run / 'adapter'}", "train.max_steps=3",
                                                    f"train.output_dir={tmp_path}", "train.run_name=more"])
    result = train(cfg, progress=False)
    # Continued from the trained adapter, the loss starts where the smoke run ended, not at the untrained 7+.
    assert result.losses[0][1] < _losses(smoke_run)[0] - 1.0


def _train_cli(out, *extra, wait_for_checkpoint=False):
    args = [sys.executable, "scripts/train.py", "--config", "configs/smoke.yaml", f"train.output_dir={out}",
            "train.run_name=r", "train.max_steps=12", "train.save_steps=4", "train.eval_steps=100", *extra]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if wait_for_checkpoint:
        deadline = time.time() + 300
        while not list((out / "r" / "checkpoints").glob("checkpoint-4/trainer_state.json")):
            assert proc.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)  # a preempted rented GPU
    output, _ = proc.communicate(timeout=600)
    return proc.returncode, output


def test_preempted_run_resumes_to_the_same_adapter(tmp_path):
    code, output = _train_cli(tmp_path / "straight")
    assert code == 0, output[-3000:]
    code, output = _train_cli(tmp_path / "preempted", wait_for_checkpoint=True)
    assert code == 143 and "Run the same command again to resume" in output, output[-3000:]
    assert not (tmp_path / "preempted" / "r" / "adapter").exists()
    code, output = _train_cli(tmp_path / "preempted")
    assert code == 0, output[-3000:]
    straight = load_file(tmp_path / "straight" / "r" / "adapter" / "adapter_model.safetensors")
    resumed = load_file(tmp_path / "preempted" / "r" / "adapter" / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():
        assert (tensor - resumed[name]).abs().max() < 1e-5, name


def test_wandb_offline_logs_config_and_report_without_the_key(tmp_path):
    from kit.config import load_config
    from kit.train import train

    cfg = load_config(ROOT / "configs/smoke.yaml", [
        "train.max_steps=2", f"train.output_dir={tmp_path}", "train.run_name=w", "tracking.wandb=offline",
        "tracking.api_key=sekret-key-123", "tracking.tags=[test]"])
    result = train(cfg, progress=False)
    runs = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert runs, "no offline wandb run was written"
    for path in result.run_dir.rglob("*"):
        if path.is_file():
            assert b"sekret-key-123" not in path.read_bytes(), f"the API key leaked into {path}"


def test_config_and_plan_are_printed_before_training(tmp_path, tiny_dir):
    result = run_script("scripts/train.py", "--config", "configs/smoke.yaml", "train.max_steps=1",
                        f"train.output_dir={tmp_path}", "lora.r=8")
    assert f"config: {tmp_path / 'smoke' / 'config.yaml'} (set: " in result.stdout
    assert "lora.r=8" in result.stdout and "train.max_steps=1" in result.stdout  # what differs from the defaults
    plan = result.stdout[result.stdout.index("plan:"):]
    for line in (f"model     tiny ({tiny_dir})", "LoRA      r=8 alpha=32 on q_proj, k_proj", "backend   hf, optimizer "
                 "adamw_torch", "VRAM", "data      ", "steps     1 x batch 8", "output"):
        assert line in plan
    assert "chat share:" in result.stdout  # the data report


def test_rerunning_a_finished_run_says_so_and_trains_nothing(smoke_run):
    before = (smoke_run / "adapter" / "adapter_model.safetensors").read_bytes()
    result = run_script("scripts/train.py", "--config", "configs/smoke.yaml",
                        f"train.output_dir={smoke_run.parent}")
    assert "is already complete (100 steps)" in result.stdout
    assert (smoke_run / "adapter" / "adapter_model.safetensors").read_bytes() == before
