"""What only a CUDA GPU can run: Unsloth's loading, training, continuation and inference, and the hf baseline in 4-bit.

    python -m pytest -m gpu tests/gpu -x -q              # on the GPU machine (scripts/gpu_check.py runs it too)

A random-weight Qwen3 at the 0.6B shape (tests/shapes.py), quantized by bitsandbytes on load: speed and memory do not
depend on the weights' values, and the loss still falls on the repeated sample data. Every model loads in a fresh
process, since unsloth patches transformers for the whole process. Speed, memory and the larger shapes are
scripts/gpu_check.py's.
"""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def shape_dir(tmp_path_factory):
    from tests.shapes import build_random_qwen3

    return build_random_qwen3("0.6B", tmp_path_factory.mktemp("shapes") / "0.6B")


def _train(shape_dir, out, backend, *extra):
    args = [sys.executable, "scripts/train.py", "--config", "configs/smoke.yaml", f"model.name={shape_dir}",
            "model.source=local", "model.load_in_4bit=true", f"train.backend={backend}", "train.max_steps=12",
            "train.learning_rate=1e-3", "lora.r=32", "lora.lora_alpha=32", f"train.output_dir={out}",
            f"train.run_name={backend}", "train.gradient_checkpointing=true", "train.per_device_train_batch_size=4",
            "train.eval_steps=100", "train.save_steps=100", *extra]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / backend


def _losses(run):
    lines = (run / "logs/metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if '"loss"' in line]


@pytest.fixture(scope="module")
def unsloth_run(shape_dir, tmp_path_factory):
    return _train(shape_dir, tmp_path_factory.mktemp("runs"), "unsloth")


def _python(code: str) -> dict:
    """Run `code` in a fresh interpreter in the repo; it prints one JSON line last."""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_unsloth_trains_in_4bit(unsloth_run):
    losses = _losses(unsloth_run)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert (unsloth_run / "adapter" / "adapter_model.safetensors").is_file()


def test_hf_baseline_trains_in_4bit(shape_dir, tmp_path):
    run = _train(shape_dir, tmp_path, "hf")
    losses = _losses(run)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses


def test_continuing_an_adapter_keeps_unsloths_checkpointing_and_kernels(unsloth_run, shape_dir):
    """A continued adapter gets what a new one gets from get_peft_model: offloaded checkpointing on (the trainer's
    own flag is off) and the same fused LoRA forward on every layer."""
    probe = f"""
import json
from kit.training.backends import activate_backend
activate_backend("unsloth")
from kit.training.backends import load_for_training
from kit.config import load_config

def state(adapter):
    cfg = load_config("configs/smoke.yaml", ["model.name={shape_dir}", "model.source=local", "lora.r=32",
                      "lora.lora_alpha=32", "train.gradient_checkpointing=true", "model.adapter=" + adapter])
    model, _ = load_for_training(cfg, "unsloth")
    layers = model.base_model.model.model.layers
    name = lambda f: getattr(f, "__qualname__", repr(f))
    return {{"checkpointing": getattr(model, "_unsloth_gradient_checkpointing", None),
            "mlp": sorted({{name(l.mlp.forward) for l in layers}}),
            "attention": sorted({{name(getattr(l.self_attn, "apply_qkv", None)) for l in layers}})}}

print(json.dumps({{"new": state(""), "continued": state("{unsloth_run / 'adapter'}")}}))
"""
    result = _python(probe)
    assert result["continued"]["checkpointing"] == "unsloth"
    assert result["continued"] == result["new"]


def test_unsloth_inference_with_base_and_adapter(unsloth_run, shape_dir):
    """Random weights at a real shape draw ids from Qwen3's whole vocabulary, and those above the tiny tokenizer's
    decode to '': the reply is counted in tokens, as generate returned them, not in text."""
    probe = f"""
import json
from kit.inference.generate import chat, load_for_inference
model, tokenizer = load_for_inference("{unsloth_run / 'adapter'}", base="{shape_dir}", backend="unsloth")
counts, generate = [], model.generate

def counted(**inputs):
    out = generate(**inputs)
    counts.append(out.shape[1] - inputs["input_ids"].shape[1])
    return out

model.generate = counted
chat(model, tokenizer, "What is 2 + 2?", thinking=False, max_new_tokens=8, min_new_tokens=8)
print(json.dumps({{"new_tokens": counts}}))
"""
    assert _python(probe)["new_tokens"] == [8]  # min_new_tokens: no early end-of-turn from random weights


def test_merged_4bit_export_through_unsloth(unsloth_run, tmp_path):
    args = [sys.executable, "scripts/export.py", "--run", str(unsloth_run), f"export.out_dir={tmp_path}",
            "export.formats=[merged_4bit_forced]"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert list((tmp_path / "merged_4bit_forced").glob("*.safetensors"))


def test_auto_picks_unsloth_on_a_gpu():
    from kit.training.backends import pick_backend

    assert pick_backend("auto") == "unsloth"
