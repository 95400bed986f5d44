"""Run folders on temporary folders, no training: finding checkpoints and finished runs, checking adapters, the lock,
and what a resume keeps, refuses and records (kit.training.runs)."""

import json
import os
import re
import time

import pytest

from kit.config import load_config
from kit.errors import KitError
from kit.training.runs import (
    adapter_from_checkpoint,
    adapter_problem,
    checkpoint_step,
    config_changes,
    finished_run,
    has_adapter,
    identity_changes,
    keep_metrics_until,
    newest_checkpoint,
    record_config,
    resume_point,
    run_folder,
    run_lock,
    verify_adapter,
)
from tests.conftest import ROOT


def _cfg(tmp_path, *overrides: str):
    return load_config(ROOT / "configs" / "smoke.yaml", [f"train.output_dir={tmp_path}", *overrides])


def _checkpoint(run, step: int, state: str = '{"global_step": 1}'):
    folder = run / "checkpoints" / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(state)
    return folder


def _zip() -> bytes:
    """An archive as torch.save writes (optimizer.pt)."""
    import io

    import torch

    out = io.BytesIO()
    torch.save({"state": {}}, out)
    return out.getvalue()


def _adapter(folder, *, r: int = 4):
    """A small whole LoRA adapter folder, as peft writes one."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 8, "peft_type": "LORA"}))
    save_file({"base_model.model.x.lora_A.weight": torch.ones(r, 3)}, folder / "adapter_model.safetensors")
    return folder


def test_run_folder_is_output_dir_and_name_or_a_timestamp(tmp_path):
    assert run_folder(_cfg(tmp_path)) == tmp_path / "smoke"
    stamped = run_folder(_cfg(tmp_path, "train.run_name="))
    assert stamped.parent == tmp_path and re.fullmatch(r"run-\d{8}-\d{6}", stamped.name), stamped
    assert abs(time.mktime(time.strptime(stamped.name, "run-%Y%m%d-%H%M%S")) - time.time()) < 60


def test_the_newest_checkpoint_is_the_highest_step_that_is_whole(tmp_path):
    run = tmp_path / "run"
    assert newest_checkpoint(run) is None
    for step in (9, 10, 100):
        _checkpoint(run, step)
    assert newest_checkpoint(run).name == "checkpoint-100" and checkpoint_step(newest_checkpoint(run)) == 100
    (run / "checkpoints" / "checkpoint-100" / "trainer_state.json").write_text('{"global_step": 1')  # cut by a kill
    assert newest_checkpoint(run).name == "checkpoint-10"  # by step, not by name (checkpoint-9 sorts later)
    (run / "checkpoints" / "checkpoint-10" / "trainer_state.json").write_text("[]")  # JSON, not a trainer state
    (run / "checkpoints" / "checkpoint-11").mkdir()  # the state never written
    assert newest_checkpoint(run).name == "checkpoint-9"
    assert checkpoint_step("runs/smoke/checkpoints/checkpoint-75") == 75
    # A copy cut short: the adapter's weights or the optimizer's archive (resuming from it raised a traceback).
    for step, name in ((20, "adapter_model.safetensors"), (30, "optimizer.pt")):
        _adapter(_checkpoint(run, step))
        (run / "checkpoints" / f"checkpoint-{step}" / "optimizer.pt").write_bytes(_zip())
        assert newest_checkpoint(run).name == f"checkpoint-{step}"
        whole = run / "checkpoints" / f"checkpoint-{step}" / name
        whole.write_bytes(whole.read_bytes()[:100])
        assert newest_checkpoint(run).name == "checkpoint-9"


def test_a_whole_adapter_has_no_problem_and_each_damage_is_named(tmp_path):
    adapter = _adapter(tmp_path / "a")
    assert adapter_problem(adapter) is None and has_adapter(tmp_path) is False
    weights, config = adapter / "adapter_model.safetensors", adapter / "adapter_config.json"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:-4])
    assert adapter_problem(adapter) == f"{weights} is cut short ({len(whole) - 4:,} of {len(whole):,} bytes)"
    weights.write_bytes(b"cut")
    assert adapter_problem(adapter) == f"{weights} is not a safetensors file (it is damaged)"
    weights.write_bytes((8).to_bytes(8, "little") + b"{}      ")  # a header that lists no tensor
    assert adapter_problem(adapter) == f"{weights} is cut short (16 of 0 bytes)"
    weights.unlink()
    assert adapter_problem(adapter) == f"{weights} is missing"
    config.write_text('{"lora_alpha": 8}')
    assert adapter_problem(adapter) == f"{config} is not a LoRA adapter's config (no rank r)"
    config.write_text("[4]")
    assert adapter_problem(adapter) == f"{config} is not a LoRA adapter's config (no rank r)"
    config.write_text('{"r": 4')
    assert adapter_problem(adapter).startswith(f"{config} is not the JSON the kit wrote")


def test_a_damaged_adapter_is_refused_with_the_fix_for_where_it_is(tmp_path):
    verify_adapter(_adapter(tmp_path / "run" / "adapter"))  # whole: nothing raised, nothing changed
    for folder in (tmp_path / "run" / "adapter", tmp_path / "copied"):
        (_adapter(folder) / "adapter_model.safetensors").unlink()
    with pytest.raises(KitError, match=r"is missing; copy or save the adapter again"):
        verify_adapter(tmp_path / "run" / "adapter")  # named adapter/, but in no run (no config.yaml beside it)
    (tmp_path / "run" / "config.yaml").write_text("")
    with pytest.raises(KitError, match=r"adapter_model.safetensors is missing; run the train command of "):
        verify_adapter(tmp_path / "run" / "adapter")
    with pytest.raises(KitError, match=r"is missing; copy or save the adapter again from where it was made\.$"):
        verify_adapter(tmp_path / "copied")


def test_a_finished_run_is_the_named_one_or_the_newest_with_an_adapter(tmp_path):
    with pytest.raises(KitError, match=rf"no finished run at {tmp_path}/smoke: train it first"):
        finished_run(_cfg(tmp_path))
    with pytest.raises(KitError, match=rf"no finished run at {tmp_path}/\*: train it first"):
        finished_run(_cfg(tmp_path, "train.run_name="))
    for i, name in enumerate(["old", "new", "smoke"]):
        _adapter(tmp_path / name / "adapter")
        os.utime(tmp_path / name, (1000 + i, 1000 + i))
    (tmp_path / "unfinished" / "checkpoints").mkdir(parents=True)  # the newest folder, but no adapter yet
    os.utime(tmp_path / "smoke", (5000, 5000))
    os.utime(tmp_path / "old", (4000, 4000))
    assert finished_run(_cfg(tmp_path)) == tmp_path / "smoke"
    assert finished_run(_cfg(tmp_path, "train.run_name=old")) == tmp_path / "old"
    assert finished_run(_cfg(tmp_path, "train.run_name=")) == tmp_path / "smoke"
    os.utime(tmp_path / "new", (6000, 6000))
    assert finished_run(_cfg(tmp_path, "train.run_name=")) == tmp_path / "new"
    with pytest.raises(KitError, match="no finished run at .*/unfinished"):
        finished_run(_cfg(tmp_path, "train.run_name=unfinished"))


def test_one_process_holds_a_run_and_a_second_is_told_who(tmp_path):
    run = tmp_path / "runs" / "run"  # neither folder made yet: the lock makes them
    with run_lock(run):
        assert (run / ".lock").read_text() == f"{os.getpid()} trained"
        with pytest.raises(KitError, match=rf"is being trained by process {os.getpid()}; wait for it to end or stop "
                                           r"it\.$"):
            with run_lock(run, "exported"):
                pass
        with pytest.raises(KitError, match=r"or name a separate run \(train.run_name, or grpo.run_name for GRPO\)"):
            with run_lock(run):
                pass
    with run_lock(run, "exported"):  # released when the holder is done
        assert (run / ".lock").read_text() == f"{os.getpid()} exported"
    (run / ".lock").write_text("")
    with open(run / ".lock") as held:  # a holder that never said who it is
        import fcntl

        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(KitError, match=r"is being trained by process \?"):
            with run_lock(run):
                pass


def _trained(tmp_path, *overrides):
    """A run folder as training leaves it: config.yaml, a checkpoint, an adapter, logs."""
    cfg = _cfg(tmp_path, *overrides)
    run = tmp_path / "smoke"
    record_config(cfg, run, None)
    _checkpoint(run, 25)
    _adapter(run / "adapter")
    (run / "logs").mkdir()
    return run


def test_a_new_run_saves_its_config_and_a_resume_keeps_the_first(tmp_path):
    run = tmp_path / "smoke"
    record_config(_cfg(tmp_path, "lora.r=8"), run, None)
    assert load_config(run / "config.yaml").lora.r == 8
    record_config(_cfg(tmp_path, "lora.r=4"), run, None)  # nothing trained yet: the new settings replace the old
    assert load_config(run / "config.yaml").lora.r == 4
    _checkpoint(run, 25)
    (run / "logs").mkdir()  # as training makes it before this
    record_config(_cfg(tmp_path, "lora.r=4", "train.learning_rate=0.001"), run, str(run / "checkpoints" /
                                                                                     "checkpoint-25"))
    assert load_config(run / "config.yaml").train.learning_rate == 5.0e-3
    assert [json.loads(line) for line in (run / "logs" / "resumes.jsonl").read_text().splitlines()] == [
        {"step": 25, "changed": {"train.learning_rate": [5.0e-3, 0.001]}}]


def test_a_resume_that_would_continue_another_run_is_refused_unless_allowed(tmp_path, capsys):
    run = _trained(tmp_path)
    changed = _cfg(tmp_path, "lora.r=8", "data.chat_ratio=0.5", "model.cache_dir=/elsewhere", "train.max_steps=7")
    assert config_changes(run, changed) == {"lora.r": (16, 8), "data.chat_ratio": (0.25, 0.5),
                                            "model.cache_dir": ("", "/elsewhere"), "train.max_steps": (100, 7)}
    assert identity_changes(config_changes(run, changed)) == ["data.chat_ratio", "lora.r"]
    assert identity_changes(config_changes(run, changed), ("model.", "lora.", "data.reasoning.")) == ["lora.r"]
    with pytest.raises(KitError, match=r"trained with other settings \(data.chat_ratio: 0.25 then, 0.5 now; lora.r: "
                                       r"16 then, 8 now\); name a new run"):
        record_config(changed, run, None)  # the adapter alone makes it a trained run
    assert not (run / "logs" / "resumes.jsonl").exists()
    record_config(_cfg(tmp_path, "data.reasoning.heldout=0.2"), run, None, ("data.chat",))  # GRPO's own identity
    with pytest.raises(KitError, match=r"\(lora.r changes the weights' shape: no setting continues it\).$"):
        record_config(_cfg(tmp_path, "lora.r=8", "train.allow_changes=true"), run, None)  # it crashed in loading
    allowed = _cfg(tmp_path, "data.chat_ratio=0.5", "train.allow_changes=true")
    record_config(allowed, run, None)
    records = [json.loads(line) for line in (run / "logs" / "resumes.jsonl").read_text().splitlines()]
    assert records[-1] == {"step": None, "changed": {"data.chat_ratio": [0.25, 0.5],
                                                     "train.allow_changes": [False, True]}}
    assert "changed since the run began: " in capsys.readouterr().out
    resumes = (run / "logs" / "resumes.jsonl").read_text()
    record_config(_cfg(tmp_path), run, None)  # nothing changed: nothing recorded
    assert (run / "logs" / "resumes.jsonl").read_text() == resumes


def test_resume_never_starts_again_and_auto_continues_from_the_newest_whole_checkpoint(tmp_path):
    run = _trained(tmp_path)
    _checkpoint(run, 50)
    cut = _checkpoint(run, 75, '{"global')
    assert resume_point(_cfg(tmp_path, f"train.resume={run / 'checkpoints' / 'checkpoint-25'}"), run) == \
        str(run / "checkpoints" / "checkpoint-25")
    assert not cut.exists()  # a cut checkpoint goes, whatever is resumed
    assert resume_point(_cfg(tmp_path), run) == str(run / "checkpoints" / "checkpoint-50")
    assert resume_point(_cfg(tmp_path, "train.resume=never"), run) is None
    assert resume_point(_cfg(tmp_path, "train.resume=never"), tmp_path / "never-trained") is None
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    assert resume_point(_cfg(tmp_path), run) is None


def test_a_resume_keeps_the_metrics_up_to_its_step(tmp_path):
    run = tmp_path / "run"
    keep_metrics_until(run, 5)  # nothing logged yet: nothing written
    assert not (run / "logs").exists()
    (run / "logs").mkdir(parents=True)
    records = [{"step": 1, "loss": 2.0}, {"eval_loss": 1.0}, {"step": 2, "loss": 1.5}, {"step": 3, "loss": 1.0},
               {"step": 3, "train_runtime": 9.0}]
    (run / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    keep_metrics_until(run, 2)
    assert [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()] == records[:3]


def test_an_adapter_is_written_from_a_final_checkpoint_without_the_optimizer(tmp_path):
    checkpoint = _adapter(tmp_path / "run" / "checkpoints" / "checkpoint-100")
    for name in ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth", "rng_state_1.pth",
                 "scaler.pt", "tokenizer.json"):
        (checkpoint / name).write_text(name)
    (checkpoint / "subfolder").mkdir()
    adapter = adapter_from_checkpoint(checkpoint, tmp_path / "run")
    assert adapter == tmp_path / "run" / "adapter" and adapter_problem(adapter) is None
    assert sorted(p.name for p in adapter.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                          "tokenizer.json"]
    assert (adapter / "adapter_model.safetensors").read_bytes() == \
        (checkpoint / "adapter_model.safetensors").read_bytes()
