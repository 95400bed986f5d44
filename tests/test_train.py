import json
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from kit.models.profiles import PROJECTIONS
from kit.training.backends import BackendError, check_adapter, linear_modules, pick_backend
from kit.training.metrics import eval_curves, read_metrics, switch_curve
from tests.conftest import ROOT, run_script


def _losses(run_dir) -> list[float]:
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


def test_smoke_run_learns_and_writes_a_complete_run_folder(smoke_run):
    losses = _losses(smoke_run)
    assert len(losses) == 100
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first / 10, f"the loss did not visibly fall: {first:.3f} -> {last:.3f}"
    assert (smoke_run / "config.yaml").is_file() and (smoke_run / "data_report.json").is_file()
    assert (smoke_run / "adapter" / "adapter_model.safetensors").is_file()
    assert (smoke_run / "adapter" / "tokenizer.json").is_file()
    checkpoints = sorted(p.name for p in (smoke_run / "checkpoints").glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-100", "checkpoint-75"]  # every 25 steps, the newest 2 kept
    records = read_metrics(smoke_run)
    # Each source evaluated on its own, first before training (the reference), then every 25 steps; eval_loss is
    # their mean over the eval rows (18 reasoning and 6 chat: the mix's proportion of data.eval_rows=24).
    curves = eval_curves(records)
    assert list(curves) == ["reasoning", "chat"]
    assert [step for step, _ in curves["chat"]] == [step for step, _ in curves["reasoning"]] == [0, 25, 50, 75, 100]
    means = [r["eval_loss"] for r in records if "eval_loss" in r]
    assert means == pytest.approx([(18 * r + 6 * c) / 24 for (_, r), (_, c) in zip(curves["reasoning"],
                                                                                   curves["chat"], strict=True)])
    assert curves["reasoning"][-1][1] < curves["reasoning"][0][1] / 10  # trained on: the held-out rows' loss falls
    # The thinking switch, checked with each evaluation and logged in its record: step 0 is the base model's.
    assert [(r["step"], "eval_loss" in r) for r in records if "eval_switch" in r] == [(s, True) for s in
                                                                                      [0, 25, 50, 75, 100]]
    assert all(0 <= v <= 1 for _, v in switch_curve(records))


def test_the_smoke_runs_losses_are_pinned(smoke_run):
    """The README's first command at its fixed seeds, as torchtune's recipe tests pin theirs: the pretrained base's
    loss on the eval rows (step 0) and the first three training losses, to a relative 1e-3 (another CPU may add in
    another order; a change to the data, the template, the labels, the base or the optimizer moves them further)."""
    records = read_metrics(smoke_run)
    assert _losses(smoke_run)[:3] == pytest.approx([0.56606, 0.63810, 0.54846], rel=1e-3)
    assert [r["eval_loss"] for r in records if "eval_loss" in r][0] == pytest.approx(1.03329, rel=1e-3)


def test_the_switch_score_falls_when_a_template_breaks_the_switch(smoke_run, smoke_cfg):
    """The check training runs at each evaluation, on the trained model: with the template's empty think block taken
    out of the thinking-off prompt (the switch broken on purpose) no thinking-off reply passes, and the score falls."""
    from kit.inference.generate import load_for_inference
    from kit.training.trainer import switch_check

    model, tokenizer = load_for_inference(smoke_run / "adapter", backend="hf")
    check = switch_check(smoke_cfg(), "hf")
    kept = check(model, tokenizer)
    tokenizer.chat_template = tokenizer.chat_template.replace("{{- '<think>\\n\\n</think>\\n\\n' }}", "")
    broken = check(model, tokenizer)
    assert broken["switch_thinking_off"] <= kept["switch_thinking_off"] - 0.25, (kept, broken)
    assert broken["switch"] < kept["switch"]


def test_a_falling_switch_warns_while_training_and_stops_the_export(run_copy, tmp_path, capsys):
    """A run whose thinking switch fell while it trained (the smoke run's records with its last switch score set to 0,
    as a run that lost its thinking-off mode logs it): the warning prints at the evaluation, and the export is refused
    unless allowed."""
    from transformers import TrainerState

    from kit.config import load_config
    from kit.export.export import ExportError, export_run
    from kit.training.trainer import switch_watch

    run = run_copy(checkpoints=False)
    records = read_metrics(run)
    records[max(i for i, r in enumerate(records) if "eval_switch" in r)]["eval_switch"] = 0.0
    (run / "logs" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (_, first), (last_step, _) = switch_curve(records)[0], switch_curve(records)[-1]
    assert first > 0, "the smoke run's base passes no switch prompt: nothing can fall"
    drop = first / 2
    watch, state = switch_watch(drop), TrainerState()
    for record in records:
        state.log_history.append(record)
        watch.on_log(None, state, None, logs=record)
    warned = capsys.readouterr().out
    assert f"warning: the thinking switch scored 0.00 at step {last_step}, down from {first:.2f}" in warned
    out = tmp_path / "export"
    cfg = load_config(run / "config.yaml", [f"train.switch_drop={drop}", f"export.out_dir={out}",
                                            "export.formats=[adapter]"])
    with pytest.raises(ExportError, match="may ignore enable_thinking; nothing was exported"):
        export_run(run, cfg)
    assert not out.exists() or not any(out.iterdir())
    cfg.export.allow_broken_switch = True
    assert export_run(run, cfg).folders["adapter"].is_dir()


def test_the_loss_plots_draw_each_source_against_its_step_0(smoke_run):
    """Notebook 04's live plot, replayed over the smoke run's logs as the trainer sent them, draws what
    `kit.plots.losses` draws from metrics.jsonl: the training loss, and each source's eval loss with its step-0 line."""
    from transformers import TrainerState

    from kit.plots import live_loss_plot, losses

    lines = losses(smoke_run).axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["train loss", "eval loss reasoning", "reasoning at step 0",
                                                    "eval loss chat", "chat at step 0"]
    live, state, records = live_loss_plot(), TrainerState(max_steps=100), read_metrics(smoke_run)
    for record in records:
        state.global_step = record["step"]
        live.on_log(None, state, None, logs={k: v for k, v in record.items() if k != "step"})
    assert eval_curves(live.records) == eval_curves(records)


def test_backend_choice():
    assert pick_backend("auto") == "hf"  # no CUDA GPU on this machine
    assert pick_backend("hf") == "hf"
    with pytest.raises(BackendError, match=r"train.backend=unsloth needs a CUDA GPU .* use train.backend=hf"):
        pick_backend("unsloth")


def test_lora_targets_are_checked_against_the_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    from kit.training.backends import check_targets

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert linear_modules(model) == sorted(PROJECTIONS)
    with pytest.raises(BackendError, match=r"\['qkv_proj'\], which this model does not have; its linear layers are"):
        check_targets(model, ["q_proj", "qkv_proj"])


def test_continuing_an_adapter_checks_rank_alpha_and_targets(smoke_run, smoke_cfg):
    adapter = smoke_run / "adapter"
    check_adapter(smoke_cfg(f"model.adapter={adapter}"))
    with pytest.raises(BackendError, match=r"the adapter has r=16 but lora.r is 8; the adapter has alpha=32 but"):
        check_adapter(smoke_cfg(f"model.adapter={adapter}", "lora.r=8", "lora.lora_alpha=8"))


def test_continue_training_an_adapter(smoke_run, tmp_path):
    from kit.config import load_config
    from kit.training.sft import train

    cfg = load_config(ROOT / "configs/smoke.yaml", [f"model.adapter={smoke_run / 'adapter'}", "train.max_steps=3",
                                                    f"train.output_dir={tmp_path}", "train.run_name=more"])
    result = train(cfg, progress=False)
    # Continued from the trained adapter, the loss starts where the smoke run ended, not where it began.
    assert result.losses[0][1] < _losses(smoke_run)[0] / 10


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


def _train_loss(run_dir) -> float:
    """The run's mean training loss, as the trainer's last log line reports it."""
    lines = (run_dir / "logs" / "metrics.jsonl").read_text().splitlines()
    return next(json.loads(line)["train_loss"] for line in reversed(lines) if '"train_loss"' in line)


def test_preempted_run_resumes_to_the_same_adapter(tmp_path):
    code, output = _train_cli(tmp_path / "straight")
    assert code == 0, output[-3000:]
    assert output.count(" s/step, so about ") == 1, output[-3000:]  # the time left, once the first steps are timed
    code, output = _train_cli(tmp_path / "preempted", wait_for_checkpoint=True)
    assert code == 143 and "Run the same command again to resume" in output, output[-3000:]
    assert "SIGTERM: stopping after this step and saving a checkpoint" in output
    assert not (tmp_path / "preempted" / "r" / "adapter").exists()
    code, output = _train_cli(tmp_path / "preempted")
    assert code == 0 and "resuming from checkpoint-" in output, output[-3000:]
    # The mean loss covers the whole run, not the resumed steps' losses divided by all steps (transformers' own).
    assert _train_loss(tmp_path / "preempted" / "r") == pytest.approx(_train_loss(tmp_path / "straight" / "r"),
                                                                      rel=1e-4)
    straight = load_file(tmp_path / "straight" / "r" / "adapter" / "adapter_model.safetensors")
    resumed = load_file(tmp_path / "preempted" / "r" / "adapter" / "adapter_model.safetensors")
    assert straight.keys() == resumed.keys()
    for name, tensor in straight.items():
        assert (tensor - resumed[name]).abs().max() < 1e-5, name
    assert _losses_by_step(tmp_path / "preempted" / "r") == list(range(1, 13))  # the redone steps logged once
    # The reference evaluation before the first step, not again at the resume; then the one at the end.
    assert [r["step"] for r in read_metrics(tmp_path / "preempted" / "r") if "eval_loss" in r] == [0, 12]


def _losses_by_step(run) -> list[int]:
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"loss"' in line]


@pytest.mark.slow  # trains in this process
def test_a_run_killed_in_its_final_save_finishes_from_its_last_checkpoint(tmp_path, monkeypatch):
    """The final adapter appears in one rename: a kill while it is written leaves no adapter (so the run is not
    'complete'), and the rerun writes it from the checkpoint of the last step, training nothing more."""
    from transformers import PreTrainedTokenizerBase

    from kit.config import load_config
    from kit.training.sft import train

    cfg = load_config(ROOT / "configs/smoke.yaml", [f"train.output_dir={tmp_path}", "train.run_name=k",
                                                    "train.max_steps=4", "train.save_steps=2", "train.eval_steps=100"])

    save = PreTrainedTokenizerBase.save_pretrained

    def killed_while_writing_the_adapter(self, folder, *args, **kwargs):
        if ".adapter.tmp-" in str(folder):  # the adapter's weights are written; its tokenizer is next
            raise KeyboardInterrupt
        return save(self, folder, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", killed_while_writing_the_adapter)
        with pytest.raises(KeyboardInterrupt):
            train(cfg, progress=False)
    run = tmp_path / "k"
    assert not (run / "adapter").exists() and (run / "checkpoints" / "checkpoint-4" / "trainer_state.json").is_file()
    metrics = (run / "logs" / "metrics.jsonl").read_text()
    result = train(load_config(ROOT / "configs/smoke.yaml", [f"train.output_dir={tmp_path}", "train.run_name=k",
                                                             "train.max_steps=4", "train.save_steps=2",
                                                             "train.eval_steps=100", "train.logging_steps=2"]),
                   progress=False)
    assert result.steps == 4 and not (run / "checkpoints" / "checkpoint-5").exists()
    assert (run / "logs" / "metrics.jsonl").read_text() == metrics  # no step trained again
    checkpoint = load_file(run / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    adapter = load_file(run / "adapter" / "adapter_model.safetensors")
    assert all((checkpoint[k] == adapter[k]).all() for k in checkpoint)
    assert (run / "adapter" / "tokenizer.json").is_file() and not (run / "adapter" / "optimizer.pt").exists()
    (change,) = [json.loads(line) for line in (run / "logs" / "resumes.jsonl").read_text().splitlines()]
    assert change == {"step": 4, "changed": {"train.logging_steps": [1, 2]}}


def test_a_second_process_on_the_same_run_is_refused_and_ctrl_c_stops_with_a_checkpoint(tmp_path):
    args = [sys.executable, "scripts/train.py", "--config", "configs/smoke.yaml", f"train.output_dir={tmp_path}",
            "train.run_name=r", "train.max_steps=400", "train.save_steps=4", "train.eval_steps=1000"]
    first = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not list((tmp_path / "r" / "checkpoints").glob("checkpoint-*/trainer_state.json")):
        assert first.poll() is None and time.time() < deadline, "training ended before its first checkpoint"
        time.sleep(0.05)
    second = run_script(*args[1:], check=False)
    assert second.returncode == 1 and f"is being trained by process {first.pid}" in second.stderr
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=300)
    assert first.returncode == 130, output[-3000:]
    assert "Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again stops at once" in output
    assert not (tmp_path / "r" / "adapter").exists()


def test_a_run_killed_before_its_first_checkpoint_starts_over_without_its_records(tmp_path):
    logs = tmp_path / "smoke" / "logs"
    logs.mkdir(parents=True)  # what a kill -9 at step 3 leaves: records, no checkpoint
    (logs / "metrics.jsonl").write_text('{"step": 0, "eval_loss": 9.9}\n{"step": 3, "loss": 9.9}\n')
    run_script("scripts/train.py", "configs/smoke.yaml", "train.max_steps=2", f"train.output_dir={tmp_path}")
    records = [json.loads(line) for line in (logs / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]
    assert all(r.get("eval_loss") != 9.9 for r in records)


def test_a_second_ctrl_c_stops_at_once(tmp_path):
    import os

    from kit.training.sft import signals_stop
    from kit.training.trainer import stop_request

    stop = stop_request()
    with pytest.raises(KeyboardInterrupt), signals_stop(stop, announce=False):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested and stop.signal == signal.SIGINT  # the first: finish the step, keep a checkpoint
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_wandb_offline_logs_config_and_report_without_secrets(tmp_path):
    """Secrets given on the command line reach neither the run folder nor wandb's run (which records argv)."""
    run_script("scripts/train.py", "--config", "configs/smoke.yaml", "train.max_steps=2",
               f"train.output_dir={tmp_path}", "train.run_name=w", "tracking.wandb=offline",
               "tracking.api_key=sekret-key-123", "model.token=hf_sekret-456", "tracking.tags=[test]")
    run = tmp_path / "w"
    assert list((run / "wandb").glob("offline-run-*/*.wandb")), "no offline wandb run was written"
    for path in run.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"sekret-key-123" not in data and b"hf_sekret-456" not in data, f"a secret leaked into {path}"


def test_config_and_plan_are_printed_before_training(tmp_path, tiny_dir):
    # The config given without --config, as `qwen3-kit train configs/smoke.yaml` takes it.
    result = run_script("scripts/train.py", "configs/smoke.yaml", "train.max_steps=1", f"train.output_dir={tmp_path}",
                        "lora.r=8")
    assert f"config: {tmp_path / 'smoke' / 'config.yaml'} (set: " in result.stdout
    assert "lora.r=8" in result.stdout and "train.max_steps=1" in result.stdout  # what differs from the defaults
    plan = result.stdout[result.stdout.index("plan:"):]
    for line in (f"model     tiny ({tiny_dir}), fp32 weights (no GPU: 4-bit needs one)",  # the precision really used
                 "LoRA      r=8 alpha=32 on q_proj, k_proj", "backend   hf, optimizer adamw_torch",
                 "VRAM      none (CPU run)", "data      ", "output",
                 "steps     1 x batch 8 (8 x 1 accumulation) = 8 rows, 2.1% of an epoch (376 rows)",
                 "switch    4 prompts x 2 modes, up to 96 new tokens each, at step 0 and every 25 steps (1 check)"):
        assert line in plan
    assert "chat share:" in result.stdout  # the data report
    # Quiet: no torch/torchao deprecations, no bitsandbytes advice, no dict dumps of the logs.
    for noise in ("_pytree", "pip install kernels", "{'loss'", "{'eval_loss'", "'train_runtime'"):
        assert noise not in result.stdout + result.stderr, noise


def test_rerunning_a_finished_run_says_so_and_trains_nothing(smoke_run):
    before = (smoke_run / "adapter" / "adapter_model.safetensors").read_bytes()
    config = (smoke_run / "config.yaml").read_text()
    result = run_script("scripts/train.py", "--config", "configs/smoke.yaml",
                        f"train.output_dir={smoke_run.parent}", "train.learning_rate=0.001")
    assert "is already complete (100 steps)" in result.stdout
    assert (smoke_run / "adapter" / "adapter_model.safetensors").read_bytes() == before
    assert (smoke_run / "config.yaml").read_text() == config  # it still describes the adapter it made
    other = run_script("scripts/train.py", "--config", "configs/smoke.yaml", f"train.output_dir={smoke_run.parent}",
                       "data.chat_ratio=0.5", check=False)
    assert other.returncode == 1 and "was trained with other settings (data.chat_ratio: 0.25 then, 0.5 now)" in \
        other.stderr


def test_resumes_read_the_run_state_whole_or_name_it(run_copy, capsys):
    """A resume keeps the records up to its checkpoint, not the stopped session's end-of-training record; a last line
    cut by a power cut is dropped, a damaged one elsewhere named; a checkpoint whose state was cut is never resumed
    from, and goes."""
    from kit.errors import KitError
    from kit.training.runs import keep_metrics_until, newest_checkpoint, resume_point

    run = run_copy()
    metrics = run / "logs" / "metrics.jsonl"
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert any("train_runtime" in r for r in records)  # the session's end-of-training record
    with open(metrics, "a") as f:
        f.write('{"step": 100, "lo')  # cut by a power cut
    keep_metrics_until(run, 75)
    kept = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert kept == [r for r in records if r["step"] <= 75 and "train_runtime" not in r]
    metrics.write_text("{bad\n" + metrics.read_text())
    with pytest.raises(KitError, match=r"metrics.jsonl line 1 is not the JSON the kit wrote"):
        keep_metrics_until(run, 75)
    state = run / "checkpoints" / "checkpoint-100" / "trainer_state.json"
    state.write_text(state.read_text()[:100])  # cut by a kill or a full disk during the save
    assert newest_checkpoint(run).name == "checkpoint-75"
    assert resume_point(_saved_config(run), run).endswith("checkpoint-75")
    assert not state.parent.exists()


def _saved_config(run):
    from kit.config import load_config

    return load_config(run / "config.yaml")


def test_a_damaged_adapter_is_written_again_from_the_final_checkpoint(run_copy):
    run = run_copy()
    whole = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    (run / "adapter" / "adapter_model.safetensors").write_bytes(whole[:1000])
    result = run_script("scripts/train.py", "configs/smoke.yaml", f"train.output_dir={run.parent}")
    assert "finished from checkpoint-100" in result.stdout  # what the error naming a damaged adapter promises
    assert (run / "adapter" / "adapter_model.safetensors").read_bytes() == whole


def test_the_plan_says_when_max_steps_wins_over_epochs(smoke_cfg):
    from kit.training.sft import steps_note

    assert steps_note(smoke_cfg(), 460, 1) == []  # epochs left at their default: nothing to say
    (note,) = steps_note(smoke_cfg("train.num_train_epochs=3"), 460, 1)
    assert "train.max_steps=100 wins over train.num_train_epochs=3 (as in TRL); for 3 epochs (174 steps) set " \
           "train.max_steps=0" in note
    assert steps_note(smoke_cfg("train.num_train_epochs=3", "train.max_steps=0"), 460, 1) == []
