"""The unsloth backend's training path, proven as far as a CPU can: API drift, the labels Unsloth's trainer sees, and
a GRPO update through Unsloth's own compute_loss.

What a CPU cannot show (FastLanguageModel.from_pretrained reads CUDA device properties; its kernels are Triton) is in
tests/gpu and `scripts/gpu_check.py`.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from kit.training.backends import unsloth_load_kwargs, unsloth_patch_kwargs, unsloth_peft_kwargs
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def probe(tiny_dir, tmp_path_factory):
    scratch = tmp_path_factory.mktemp("unsloth")  # unsloth writes a compile cache into the working directory
    env = {**os.environ, "UNSLOTH_ALLOW_CPU": "1", "UNSLOTH_COMPILE_DISABLE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("UNSLOTH_DISABLE_STATISTICS", None)
    result = subprocess.run([sys.executable, str(ROOT / "tests" / "unsloth_cpu_probe.py"), str(tiny_dir), str(scratch)],
                            capture_output=True, text=True, env=env, timeout=900, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, result.stdout[-2000:] + result.stderr[-4000:]
    return json.loads(lines[-1].removeprefix("RESULT "))


def test_unsloth_accepts_every_keyword_the_kit_passes(probe, smoke_cfg, tmp_path):
    cfg = smoke_cfg()
    assert set(unsloth_load_kwargs(cfg, tmp_path)) <= set(probe["signature"]["from_pretrained"])
    assert set(unsloth_peft_kwargs(cfg)) <= set(probe["signature"]["get_peft_model"])
    assert set(unsloth_patch_kwargs(cfg)) <= set(probe["signature"]["patch_peft_model"])


def test_usage_statistics_are_off_unless_the_user_wants_them(probe):
    assert probe["statistics"] == "1"


@pytest.mark.parametrize("batching", ["padded", "packed"])
def test_unsloth_trainer_keeps_the_kits_labels(probe, batching):
    """Response-only loss survives Unsloth's dataset handling: every row the dataloader yields carries exactly the
    labels the kit prepared (prompt tokens -100), with padding and with padding-free packing."""
    seen = probe[batching]
    assert "UnslothSFTTrainer" in seen["trainer"] and seen["unsloth_config"]
    assert seen["rows"] == seen["expected_rows"] > 100
    assert seen["labels_unchanged"] == seen["rows"]


def test_grpo_update_through_unsloths_compute_loss(probe):
    """Unsloth's compute_loss calls the kit's log-probability helper with a seventh positional argument
    (compute_efficient, which TRL's signature does not have); the helper takes it and the update completes."""
    grpo = probe["grpo"]
    assert "UnslothGRPOTrainer" in grpo["trainer"] and grpo["compute_loss"].startswith("_UnslothGRPOTrainer.")
    assert [7, True] in grpo["calls"], grpo["calls"]
    assert math.isfinite(grpo["loss"])


def test_the_probes_steps_train_as_unsloth_trains_above_the_loaded_length(probe):
    """The probe's search trains at lengths above the one the model was loaded with: through Unsloth's own trainer
    and train(), in training mode with checkpointing on, the length it was asked for."""
    steps = probe["probe_steps"]
    assert steps["fits"] and steps["steps"] == 2, steps
    assert steps["training"] and steps["checkpointing"] and steps["max_seq_length"] == 128
    assert steps["tokens_per_step"] == 2 * 128
