import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kit.config import load_config
from kit.errors import KitError
from kit.export.export import ExportError, export_run, serve_instructions, with_thinking_default
from kit.models.profiles import chat_template
from tests.conftest import ADAPTER_FAULT_SAID, ADAPTER_FAULTS, ROOT, run_script

PROMPT = [{"role": "user", "content": "Hi"}]
EMPTY_THINK = "<|im_start|>assistant\n<think>\n\n</think>\n\n"


def _cfg(run, *overrides):
    return load_config(run / "config.yaml", list(overrides))


@pytest.fixture(scope="module")
def exported(smoke_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    return export_run(smoke_run, _cfg(smoke_run, f"export.out_dir={out}", "export.thinking_default=false")), out


def test_merged_logits_equal_base_plus_adapter(exported):
    result, _ = exported
    # bf16 keeps about 3 significant digits; a wrong merge (missing scaling, wrong base) is off by whole units.
    assert result.max_logit_diff > 0
    assert result.max_logit_diff <= 0.05 * result.logit_scale, (result.max_logit_diff, result.logit_scale)
    print(f"max |merged - (base + adapter)| = {result.max_logit_diff:.4f}, largest logit {result.logit_scale:.2f}")


def test_streamed_merge_equals_peft_merge_and_unload(exported, smoke_run, tiny_dir):
    """The CPU merge, a tensor at a time, gives peft's merge of the whole model, to the one rounding to bf16."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result, _ = exported
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32),
                                          str(smoke_run / "adapter")).merge_and_unload().state_dict()
    merged = AutoModelForCausalLM.from_pretrained(result.folders["merged_16bit"], dtype=torch.bfloat16).state_dict()
    assert merged.keys() == reference.keys()
    for name, weight in reference.items():
        torch.testing.assert_close(merged[name].float(), weight, rtol=2**-8, atol=1e-7, msg=name)


def test_a_merge_that_does_not_match_the_adapter_is_not_kept(smoke_run, tiny_dir, tmp_path):
    from transformers import AutoTokenizer

    from kit.export.export import check_merge
    from kit.export.merge import merge_lora
    from tests.shapes import build_random_adapter

    other = build_random_adapter(tiny_dir, tmp_path / "other", r=16)
    (tmp_path / "merged").mkdir()
    merge_lora(other, tiny_dir, tmp_path / "merged")
    adapter = smoke_run / "adapter"
    with pytest.raises(ExportError, match=r"merged weights differ from peft's merge of the same adapter \(\d+ of"):
        check_merge(adapter, tiny_dir, tmp_path / "merged", AutoTokenizer.from_pretrained(adapter))


def test_merged_export_is_a_complete_16bit_model_folder(exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result, _ = exported
    folder = result.folders["merged_16bit"]
    config = json.loads((folder / "config.json").read_text())
    assert config["dtype"] == "bfloat16" and "quantization_config" not in config
    assert config["architectures"] == ["Qwen3ForCausalLM"]  # what vLLM picks the model class by
    assert list(folder.glob("*.safetensors")) and (folder / "generation_config.json").is_file()
    generation = json.loads((folder / "generation_config.json").read_text())
    assert (generation["temperature"], generation["top_p"], generation["top_k"]) == (0.7, 0.8, 20)  # non-thinking
    AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True).endswith(EMPTY_THINK)
    assert "--reasoning-parser qwen3" in result.serve_command and str(folder) in result.serve_command
    assert '"enable_thinking": False' in result.client_snippet


def test_adapter_export_carries_the_template(exported):
    from transformers import AutoTokenizer

    result, _ = exported
    folder = result.folders["adapter"]
    assert (folder / "adapter_model.safetensors").is_file() and (folder / "adapter_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True).endswith(EMPTY_THINK)


def test_a_rerun_keeps_complete_formats_and_makes_the_missing_ones(exported, smoke_run, tmp_path):
    import shutil

    _, out = exported
    again = tmp_path / "export"
    shutil.copytree(out / "adapter", again / "adapter")  # as if merged_16bit had been cut short (never renamed)
    before = (again / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    result = export_run(smoke_run, _cfg(smoke_run, f"export.out_dir={again}", "export.thinking_default=false"))
    assert result.kept == ["adapter"] and (again / "merged_16bit" / "config.json").is_file()
    assert (again / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == before
    with pytest.raises(ExportError, match="already exists; pass overwrite"):  # a direct call never replaces one
        from kit.export.export import export_adapter

        export_adapter(smoke_run / "adapter", again / "adapter")


@pytest.mark.parametrize("default", [True, False])
def test_thinking_default_template(tiny_tokenizer, default):
    template = with_thinking_default(chat_template(), default)

    def render(**kwargs):
        return tiny_tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True,
                                                  chat_template=template, **kwargs)

    assert render(enable_thinking=False).endswith(EMPTY_THINK)
    assert render(enable_thinking=True).endswith("<|im_start|>assistant\n")
    assert render().endswith(EMPTY_THINK) is (not default)  # the request says nothing: the default applies
    if default:
        assert template == chat_template()


def test_killed_export_leaves_no_loadable_folder(smoke_run, tmp_path):
    out = tmp_path / "export"
    args = [sys.executable, "scripts/export.py", "--run", str(smoke_run), f"export.out_dir={out}",
            "export.formats=[merged_16bit]"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(out.glob(".merged_16bit.tmp-*/*.safetensors")):
        assert proc.poll() is None and time.time() < deadline, "the export finished before it could be killed"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # no cleanup handler runs: as a power cut or OOM kill
    proc.wait()
    assert not (out / "merged_16bit").exists(), "a killed export left a folder vLLM would load"
    run_script(*args[1:])  # the next export cleans the leftover and completes
    assert (out / "merged_16bit" / "config.json").is_file()
    assert not list(out.glob(".merged_16bit.tmp-*"))


@pytest.mark.parametrize("r,pattern,rank", [(8, {}, 8), (16, {}, 16), (24, {}, 32), (32, {"q_proj": 96}, 128)])
def test_served_lora_rank_is_the_smallest_vllm_accepts_for_the_adapter(tmp_path, r, pattern, rank):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r, "rank_pattern": pattern}))
    command, _ = serve_instructions(None, tmp_path, Path("/models/Qwen3-14B"))
    assert command.endswith(f"--lora-modules qwen3-kit={tmp_path} --max-lora-rank {rank}")
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": 1024}))
    with pytest.raises(ExportError, match="vLLM serves ranks up to 512"):
        serve_instructions(None, tmp_path, Path("/models/Qwen3-14B"))


def test_serve_command_tells_vllm_the_thinking_default():
    on, snippet = serve_instructions(Path("/export/merged_16bit"), None, None, thinking_default=True)
    off, _ = serve_instructions(Path("/export/merged_16bit"), None, None, thinking_default=False)
    assert "--default-chat-template-kwargs" not in on
    assert off == on + """ --default-chat-template-kwargs '{"enable_thinking": false}'"""
    assert ".message.reasoning)" in snippet and "reasoning_content)" not in snippet
    assert snippet.count('"enable_thinking"') == 2  # both requests say which mode they want


@pytest.mark.parametrize("fault", ADAPTER_FAULTS)
def test_a_damaged_adapter_is_named_and_nothing_is_exported(run_copy, fault):
    run = run_copy(checkpoints=False)
    ADAPTER_FAULTS[fault](run / "adapter")
    with pytest.raises(KitError, match=ADAPTER_FAULT_SAID + ".*run the train command of .* again"):
        export_run(run, _cfg(run, "export.formats=[adapter]"))  # the adapter alone is checked before it is copied
    assert not (run / "export").exists()


def test_an_export_is_made_again_when_what_made_it_changed(run_copy, tiny_dir, capsys):
    """An export records the adapter's hash and its settings: a retrained adapter, or another thinking default, makes
    it again (said), where it used to keep the old one."""
    import shutil

    from tests.shapes import build_random_adapter

    run = run_copy(checkpoints=False)
    first = export_run(run, _cfg(run, "export.formats=[adapter]"))
    assert json.loads((run / "export" / "adapter" / "made_from.json").read_text())["thinking_default"] is True
    assert export_run(run, _cfg(run, "export.formats=[adapter]")).kept == ["adapter"]  # the same: kept
    off = export_run(run, _cfg(run, "export.formats=[adapter]", "export.thinking_default=false"))
    assert off.kept == [] and "thinking_default True (now False)" in capsys.readouterr().out
    template = (first.folders["adapter"] / "chat_template.jinja").read_text()
    assert "enable_thinking is not defined or enable_thinking is false" in template  # the template follows
    shutil.rmtree(run / "adapter")
    build_random_adapter(tiny_dir, run / "adapter", r=16)  # as if the run had been trained further
    again = export_run(run, _cfg(run, "export.formats=[adapter]", "export.thinking_default=false"))
    assert again.kept == [] and "another adapter (the run was trained further)" in capsys.readouterr().out
    exported = run / "export" / "adapter" / "adapter_model.safetensors"
    assert exported.read_bytes() == (run / "adapter" / "adapter_model.safetensors").read_bytes()


def test_an_export_holds_the_run_so_a_retrain_cannot_pull_the_adapter_away(run_copy):
    from kit.training.runs import run_lock

    run = run_copy(checkpoints=False)
    with run_lock(run), pytest.raises(KitError, match=r"is being trained by process \d+; wait for it to end"):
        export_run(run, _cfg(run, "export.formats=[adapter]"))
    with run_lock(run, "exported"), pytest.raises(KitError, match=r"is being exported by process \d+"):
        with run_lock(run):
            pass


def test_a_damaged_adapter_ends_in_one_line(run_copy):
    run = run_copy(checkpoints=False)
    (run / "adapter" / "adapter_model.safetensors").write_bytes(b"cut")
    result = run_script("scripts/export.py", "--run", str(run), check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {run}/adapter/adapter_model.safetensors is not")


@pytest.mark.parametrize("sig,status,name", [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "Ctrl-C")])
def test_a_signal_while_exporting_ends_with_a_line_and_the_conventional_status(run_copy, sig, status, name):
    """Outside the training loop (here: loading and merging) a signal unwinds: the temporary folder goes, a line
    says so, the exit status is 128 + the signal."""
    run = run_copy(checkpoints=False)
    proc = subprocess.Popen([sys.executable, "scripts/export.py", "--run", str(run)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as from a terminal
    deadline = time.time() + 300
    while not list((run / "export").glob(".*.tmp-*")):  # the export has begun writing
        assert proc.poll() is None and time.time() < deadline, "the export ended before it could be stopped"
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == status and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith(f"stopped ({name})")
    assert not list((run / "export").glob(".*.tmp-*")) and not (run / "export" / "merged_16bit").exists()
