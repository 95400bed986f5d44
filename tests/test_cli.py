"""The `qwen3-kit` command: its entry point, settings as users of other tools write them, the config listing, the
GPU check before any download, the interactive chat, and the AutoDL bootstrap."""

import importlib
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from kit.config import ConfigError, load_config
from tests.conftest import ROOT, run_script


def _cli(*args: str, env: dict | None = None, stdin: str | None = None, timeout: int = 300):
    return subprocess.run([sys.executable, "-m", "kit.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          env=env, input=stdin, timeout=timeout)


def _one_error_line(result) -> str:
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]


def test_the_console_script_is_the_cli():
    """pyproject installs `qwen3-kit` as kit.cli:main; that function exists, and the module runs every subcommand."""
    entry = re.search(r'^qwen3-kit = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE).group(1)
    module, function = entry.split(":")
    assert callable(getattr(importlib.import_module(module), function))
    result = _cli("--help")
    assert result.returncode == 0
    for command in ("train", "grpo", "probe", "prepare", "download", "chat", "export", "eval", "config", "setup"):
        assert f"    {command}" in result.stdout, command


def test_config_lists_every_key_with_its_default_value_and_comment():
    from kit.config.help import rows

    result = _cli("config", "configs/smoke.yaml", "train.max_steps=7")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    table = rows(load_config(ROOT / "configs/smoke.yaml"), load_config(None))
    assert [key for key, *_ in table] == [key for key in lines if "." in key and key in {k for k, *_ in table}]
    for key, _, _, comment in table:
        assert comment, f"{key} has no comment in kit/config.py"
        assert comment in lines[key]
    assert lines["train.max_steps"].split()[1:4] == ["30", "*", "7"]  # default, changed, the value given
    assert lines["model.source"].split()[1:4] == ["modelscope", "*", "local"]  # the file's value
    assert lines["data.seed"].split()[1:3] == ["3407", "3407"]


@pytest.mark.parametrize(("setting", "home"), [
    ("report_to=wandb", "tracking.wandb (online | offline | disabled)"),  # TRL, LLaMA-Factory
    ("num_train_epochs=3", "train.num_train_epochs"),
    ("cutoff_len=4096", "model.max_seq_length"),  # LLaMA-Factory
    ("max_length=4096", "model.max_seq_length"),  # TRL, ms-swift
    ("lora_rank=16", "lora.r"),  # LLaMA-Factory, ms-swift
    ("lora_target=all", "lora.target_modules"),
    ("resume_from_checkpoint=true", "train.resume"),
    ("model_name_or_path=Qwen/Qwen3-8B", "model.name"),
    ("warmup_ratio=0.1", "train.warmup_steps (a number of steps, not a share of them)"),
    ("max_steps=10", "train.max_steps"),  # a key without its section
    ("train.lora_r=8", "lora.r"),
])
def test_familiar_names_point_home(setting, home):
    with pytest.raises(ConfigError) as e:
        load_config(None, [setting])
    assert f"unknown key '{setting.split('=')[0]}': here it is {home}" in str(e.value)
    assert "Did you mean" not in str(e.value)


def test_options_in_the_style_of_other_tools_are_answered_in_one_line():
    line = _one_error_line(run_script("scripts/train.py", "configs/smoke.yaml", "--max_steps", "10",
                                      "--report_to=wandb", check=False))
    assert "for --max_steps 10 write train.max_steps=10" in line
    assert "for --report_to wandb use tracking.wandb (online | offline | disabled)" in line
    line = _one_error_line(_cli("grpo", "configs/smoke.yaml", "--max_steps", "10"))  # GRPO has its own
    assert "for --max_steps 10 write grpo.max_steps=10" in line
    line = _one_error_line(_cli("train", "configs/smoke.yaml", "configs/qwen3-8b-4090.yaml"))
    assert "one config file at a time" in line
    line = _one_error_line(_cli("train", "train.max_steps=3"))
    assert "name a config file, e.g. `qwen3-kit train configs/smoke.yaml`" in line


def test_a_real_model_without_a_gpu_stops_before_any_download(tmp_path):
    env = {**os.environ, "QWEN3_KIT_CACHE": str(tmp_path / "cache"), "MODELSCOPE_ENDPOINT": "http://127.0.0.1:9",
           "HF_ENDPOINT": "http://127.0.0.1:9"}
    line = _one_error_line(subprocess.run(
        [sys.executable, "scripts/train.py", "--config", "configs/qwen3-14b-math.yaml"], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=300))
    assert line.startswith("error: Qwen3-14B needs a CUDA GPU and none is usable: ")
    assert "Nothing was downloaded; set train.backend=hf" in line
    assert not (tmp_path / "cache").exists()


def test_driver_too_old_for_torchs_cuda_is_named_with_the_fix():
    from kit.machine import driver_problem, proc_driver_version

    old = driver_problem("535.104.05", "13.0", "2.14.1+cu130")
    assert "the NVIDIA driver 535.104.05 is too old for torch 2.14.1+cu130" in old
    assert "needs driver 580.65.06 or newer" in old and "supports CUDA 13" in old
    assert "pip install torch==2.14.1 --index-url https://download.pytorch.org/whl/cu126" in old
    assert driver_problem("580.82.07", "13.0", "2.14.1+cu130") is None
    assert driver_problem("535.104.05", "12.8", "2.9.0+cu128") is None  # minor-version compatibility
    assert "whl/cu118" in driver_problem("470.82.01", "12.8", "2.9.0+cu128")
    assert "--index-url" not in driver_problem("440.33", "12.1", "2.4.0+cu121")  # nothing older to install
    assert proc_driver_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19") == "535.104.05"
    assert proc_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.86.15  Release") == \
        "570.86.15"


def test_plan_states_its_assumptions_and_agrees_with_the_shipped_configs():
    from kit.hub import RepoNotFound, resolve_repo
    from kit.models.memory import estimate_for, grpo_estimate_for, plan_report, shipped_configs

    plan = plan_report("Qwen3-14B", gpu_gb=24)
    assert plan.startswith("assumed: sequence length 2048 (--seq-len), batch 2 (--batch)")
    for name, cfg in shipped_configs():  # each config the README points to, at its own length and batch
        if est := estimate_for(cfg):
            assert f"{name:<28} {cfg.model.name}, length {cfg.model.max_seq_length}, batch " \
                   f"{cfg.train.per_device_train_batch_size}: ~{est.total_gb:.1f} GB  fits" in plan
            g = cfg.grpo  # and its GRPO stage: a pass of prompt + completion tokens beside generation's KV cache
            assert f"GRPO: {g.prompts_per_step * g.num_generations} completions of {g.max_prompt_length} + " \
                   f"{g.max_completion_length} tokens, pass of {g.per_device_train_batch_size}: " \
                   f"~{grpo_estimate_for(cfg).total_gb:.1f} GB  fits" in plan
    moe = plan_report("Qwen3-30B-A3B")
    assert "Qwen3-30B-A3B is a MoE whose experts bitsandbytes does not quantize" in moe
    assert "swift sft --model Qwen/Qwen3-30B-A3B" in moe
    with pytest.raises(RepoNotFound, match="swift sft --model Qwen/Qwen3-30B-A3B"):
        resolve_repo("Qwen3-30B-A3B")


def test_chat_with_a_run_in_a_conversation(smoke_run):
    """Real stdin: two turns, thinking switched off by Qwen3's /no_think, then /quit."""
    result = subprocess.run([sys.executable, "scripts/chat.py", "--run", str(smoke_run), "--max-new-tokens", "6"],
                            cwd=ROOT, input="What is 2 + 2?\n/no_think\nAnd 3 + 3?\n/quit\n", capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.startswith("thinking is on; /think or /no_think switches thinking")
    assert out.count("assistant: ") == 2 and "thinking off" in out
    assert out.index("[think] you: ") < out.index("thinking off") < out.index("[no_think] you: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["runs/nowhere"], "'runs/nowhere' (relative to"),
    (["--run", "runs/nowhere"], "is not a run folder (it has no config.yaml)"),
    (["data"], "is not a model, adapter or export folder"),
])
def test_chat_turns_a_wrong_path_into_one_sentence(args, message):
    assert message in _one_error_line(run_script("scripts/chat.py", *args, "Hello", check=False))


def test_autodl_setup_puts_every_cache_on_the_data_disk(tmp_path):
    """The one command on a temporary data disk with this venv (no install): env file, shell hook, kernel, checks."""
    home, root = tmp_path / "home", tmp_path / "autodl-tmp"
    home.mkdir()
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "HF_ENDPOINT", "http_proxy"))}
    env.update(HOME=str(home), PYTHON=sys.executable)
    command = ["bash", "scripts/setup_autodl.sh", "--root", str(root), "--venv", sys.prefix, "--no-install"]
    for _ in range(2):  # a second run changes nothing
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    env_file = (root / "qwen3-kit.env").read_text()
    for name, folder in [("PIP_CACHE_DIR", "cache/pip"), ("HF_HOME", "cache/huggingface"),
                         ("MODELSCOPE_CACHE", "cache/modelscope"), ("TRITON_CACHE_DIR", "cache/triton"),
                         ("QWEN3_KIT_CACHE", "qwen3-kit")]:
        assert f"export {name}={root / folder}\n" in env_file and (root / folder).is_dir()
    assert (home / ".bashrc").read_text().count("# qwen3-kit caches") == 1  # new shells read it; added once
    kernel = json.loads((home / ".local/share/jupyter/kernels/qwen3-kit/kernel.json").read_text())
    assert kernel["argv"][0] == sys.executable and kernel["env"]["HF_HOME"] == str(root / "cache/huggingface")
    out = result.stdout
    assert "to fix:" in out and "GPU: " in out  # this machine has no GPU: named, with what still works
    assert "Hugging Face is often unreachable" in out
    assert f"source {sys.prefix}/bin/activate" in out


@pytest.mark.parametrize("content,said", [
    (b"", r"config.yaml is empty, so what the run was trained with is unknown"),
    (b"# nothing but a comment\n", r"config.yaml is empty"),
    (b"model:\n  name: \xff\xfe\n", r"config.yaml' is not UTF-8 text \(byte 0xff at offset 15\); save it as UTF-8"),
    (b"- a\n- b\n", r"config.yaml' must hold a mapping of sections"),
])
def test_a_runs_damaged_config_is_named_not_replaced_by_the_defaults(tmp_path, content, said):
    """export, eval and chat read the run's config.yaml: an empty one must not export or score with defaults."""
    from kit.cli import run_config
    from kit.errors import KitError

    (tmp_path / "config.yaml").write_bytes(content)
    with pytest.raises(KitError, match=said):
        run_config(tmp_path, [])


def _fake_driver(tmp_path, version: str) -> dict:
    """An environment whose nvidia-smi reports `version` (as a host's driver would)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho {version}\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    return os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "PYTHON": sys.executable}


def test_autodl_bootstrap_reads_the_driver_before_installing(tmp_path):
    """A host whose driver is older than torch's CUDA 13 build needs is told what to do before 6.8 GB are installed."""
    root = tmp_path / "autodl-tmp"
    root.mkdir()
    old = subprocess.run(["bash", "scripts/setup_autodl.sh", "--root", str(root)], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=_fake_driver(tmp_path, "535.104.05"))
    assert old.returncode == 1 and "Traceback" not in old.stderr
    line = old.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the NVIDIA driver 535.104.05 is too old for torch 2.14.1+cu130") and \
        "needs driver 580.65.06 or newer" in line and "TORCH_INDEX_URL=" in line and "whl/cu126" in line
    assert not (root / "venv").exists()  # nothing installed
    new = subprocess.run([sys.executable, "-m", "kit.cli", "setup", "--check-driver"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, env=_fake_driver(tmp_path, "580.82.07"))
    assert new.returncode == 0 and "driver: 580.82.07, new enough for torch 2.14.1 (CUDA 13.0)" in new.stdout


@pytest.mark.parametrize("sig,status,name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")])
def test_a_signal_landing_in_a_finalizer_is_not_lost(sig, status, name):
    """Python drops what a `__del__` raises, and loading a model runs many: Ctrl-C there used to be lost (the step
    ran on to the end, exit status 0). The signal is sent again once the finalizer is done."""
    code = """
import time
from kit.cli import run_command

class Slow:
    def __del__(self):
        print("finalizing", flush=True)
        time.sleep(0.5)

def main():
    for _ in range(10):
        Slow()  # dies at once: its finalizer runs
        time.sleep(0.5)

run_command(main)
"""
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == "finalizing\n"
    proc.send_signal(sig)  # lands in the finalizer's sleep
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == status and f"stopped ({name})" in err, err[-2000:]


@pytest.mark.parametrize("settings,again", [
    ([], "Run the same command again to resume."),
    (["train.resume=never"], "Run the same command again with train.resume=auto to resume."),  # never: starts over
    (["train.run_name="], "Run the same command again with train.run_name=run-20261206-224222 to resume."),
])
def test_a_stopped_run_says_the_command_that_resumes_it(settings, again, tmp_path, capsys):
    """'The same command' resumed only where it named its run and resumed automatically: with train.resume=never it
    deleted the checkpoint, without a name it began a new run."""
    from types import SimpleNamespace

    from kit.cli import _exit_if_stopped

    cfg = load_config(ROOT / "configs/smoke.yaml", settings)
    stopped = SimpleNamespace(interrupted=True, signal=15, main_process=True, steps=20,
                              run_dir=tmp_path / (cfg.train.run_name or "run-20261206-224222"))
    with pytest.raises(SystemExit) as e:
        _exit_if_stopped(stopped, cfg, "" if cfg.train.run_name else "train.run_name")
    assert e.value.code == 143 and capsys.readouterr().out.strip().endswith(again)


def test_output_to_a_reader_that_stopped_early_and_a_file_for_a_folder_end_in_no_traceback(tmp_path):
    read, write = os.pipe()
    os.close(read)  # `| head -1` gone before the first line
    piped = subprocess.run([sys.executable, "-m", "kit.cli", "download", "--plan", "--gpu-gb", "24"], cwd=ROOT,
                           stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert piped.returncode == 141 and piped.stderr == ""
    afile = tmp_path / "afile"
    afile.write_text("")
    blocked = run_script("scripts/download.py", "Qwen3-0.6B", "--cache-dir", str(afile), check=False)
    said = blocked.stderr.strip().splitlines()
    assert blocked.returncode == 1 and len(said) == 1 and said[0].startswith(f"error: {afile}/models/") and \
        said[0].endswith(" cannot be made: a file stands where a folder is needed on its path; name a folder.")


@pytest.mark.parametrize("args,said", [
    (["chat", "--run", "runs/x", "hi", "--max-new-tokens", "-5"],
     "error: argument --max-new-tokens: '-5' is not a number above 0 (`qwen3-kit chat --help` lists what it takes)."),
    (["download", "--plan", "--gpu-gb", "0"], "error: argument --gpu-gb: '0' is not a number above 0"),
    (["trian", "configs/smoke.yaml"], "error: argument command: invalid choice: 'trian' (choose from 'train', "),
])
def test_a_mistake_in_the_arguments_is_one_line_with_status_1_as_every_mistake(args, said):
    """argparse's own mistakes printed usage and exited 2, where the README promises one `error:` line and 1; a
    negative --max-new-tokens raised a traceback, 0 silently meant the default."""
    result = subprocess.run([sys.executable, "-m", "kit.cli", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith(said), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unsloth_asked_for_without_a_gpu_is_told_in_the_words_of_what_asked(smoke_run, tmp_path):
    """chat and the 4-bit export were told to set train.backend=hf, which they do not read."""
    from kit.export.export import _export_4bit_with_unsloth
    from kit.training.backends import BackendError

    chat = run_script("scripts/chat.py", "--run", str(smoke_run), "hi", "--backend", "unsloth", check=False)
    said = chat.stderr.strip().splitlines()[-1]
    assert chat.returncode == 1 and said.startswith("error: --backend unsloth needs a CUDA GPU and none is usable: ")
    assert said.endswith("; use --backend hf to chat on this machine.")
    with pytest.raises(BackendError, match=r"^export.formats merged_4bit_forced \(Unsloth's\) needs a CUDA GPU .*; use "
                                           r"export.formats=\[adapter,merged_16bit\] on this machine.$"):
        _export_4bit_with_unsloth(smoke_run / "adapter", tmp_path / "out", overwrite=False)
