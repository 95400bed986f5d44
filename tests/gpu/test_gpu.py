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


def _trained(run, losses) -> None:
    """Every step logged a finite loss, the loss fell, and the run's adapter is whole (rank 32, as asked)."""
    import math

    from kit.training.runs import adapter_problem

    assert len(losses) >= 10 and all(math.isfinite(x) for x in losses), losses
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert adapter_problem(run / "adapter") is None
    assert json.loads((run / "adapter" / "adapter_config.json").read_text())["r"] == 32


def test_unsloth_trains_in_4bit(unsloth_run):
    _trained(unsloth_run, _losses(unsloth_run))


def test_hf_baseline_trains_in_4bit(shape_dir, tmp_path):
    run = _train(shape_dir, tmp_path, "hf")
    _trained(run, _losses(run))


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
    # Unsloth's own LoRA forward on every layer (unsloth/models/llama.py patches each layer's mlp and apply_qkv).
    assert len(result["new"]["mlp"]) == 1 and result["new"]["mlp"] != ["Qwen3MLP.forward"], result
    assert result["new"]["attention"] == ["apply_lora_qkv"], result
    assert result["continued"] == result["new"]


def test_unsloth_inference_with_base_and_adapter(unsloth_run, shape_dir):
    """The adapter is on the loaded model and the reply is the text of the tokens generated. Random weights at a real
    shape draw ids from Qwen3's whole vocabulary, and those above the tiny tokenizer's decode to '': they are
    suppressed, so every generated token is one the tokenizer writes as text."""
    probe = f"""
import json
from kit.inference.generate import chat, load_for_inference
model, tokenizer = load_for_inference("{unsloth_run / 'adapter'}", base="{shape_dir}", backend="unsloth")
generated, generate = [], model.generate

def kept(**inputs):
    out = generate(**inputs)
    generated.append(out[0, inputs["input_ids"].shape[1]:].tolist())
    return out

model.generate = kept
unknown = list(range(len(tokenizer), model.config.vocab_size))
reply = chat(model, tokenizer, "What is 2 + 2?", thinking=False, max_new_tokens=8, min_new_tokens=8,
             suppress_tokens=unknown)
print(json.dumps({{"generated": generated, "text": reply.text,
                  "decoded": tokenizer.decode(generated[0], skip_special_tokens=True),
                  "lora_layers": sum(name.endswith("lora_A") for name, _ in model.named_modules())}}))
"""
    result = _python(probe)
    assert len(result["generated"]) == 1 and len(result["generated"][0]) == 8  # min_new_tokens: no early end
    assert result["text"] == result["decoded"] and result["text"].strip(), result  # text, and the tokens' own
    assert result["lora_layers"] == 28 * 7  # the adapter's seven projections on each of the 0.6B shape's layers


def test_merged_4bit_export_through_unsloth(unsloth_run, tmp_path):
    args = [sys.executable, "scripts/export.py", "--run", str(unsloth_run), f"export.out_dir={tmp_path}",
            "export.formats=[merged_4bit_forced]"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    merged = tmp_path / "merged_4bit_forced"
    assert list(merged.glob("*.safetensors"))
    config = json.loads((merged / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and "quantization_config" in config, config


def test_auto_picks_unsloth_on_a_gpu():
    from kit.training.backends import pick_backend

    assert pick_backend("auto") == "unsloth"
