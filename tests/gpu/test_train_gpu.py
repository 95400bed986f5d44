"""Train random-weight Qwen3 at real shapes in 4-bit with both backends (GPU only).

    python -m pytest -m gpu tests/gpu -x -s

Weights are random (built from the published config by kit.smoke), quantized by bitsandbytes on load; speed and
memory do not depend on their values, and the loss must still fall on the repeated sample data.
"""

import json

import pytest

from kit.config import load_config
from tests.conftest import ROOT

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def shape_dirs(tmp_path_factory):
    from kit.smoke import build_random_qwen3

    root = tmp_path_factory.mktemp("shapes")
    return {shape: build_random_qwen3(shape, root / shape) for shape in ("0.6B", "8B")}


@pytest.mark.parametrize("backend", ["unsloth", "hf"])
@pytest.mark.parametrize("shape", ["0.6B", "8B"])
def test_four_bit_lora_trains_at_real_shapes(shape_dirs, backend, shape, tmp_path):
    import subprocess
    import sys

    # A fresh process per backend: unsloth patches transformers for the whole process.
    args = [sys.executable, "scripts/train.py", "--config", "configs/smoke.yaml",
            f"model.name={shape_dirs[shape]}", "model.source=local", "model.load_in_4bit=true",
            f"train.backend={backend}", "train.max_steps=12", "train.learning_rate=1e-3", "lora.r=32", "lora.alpha=32",
            f"train.output_dir={tmp_path}", "train.run_name=gpu", "train.gradient_checkpointing=true",
            "train.per_device_train_batch_size=4", "train.eval_steps=100", "train.save_steps=100"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run = tmp_path / "gpu"
    losses = [json.loads(line)["loss"] for line in (run / "logs/metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    print(f"{shape} {backend}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")


def test_config_on_gpu_picks_unsloth():
    from kit.backends import pick_backend

    assert pick_backend(load_config(ROOT / "configs/qwen3-14b-math.yaml").train.backend) == "unsloth"
