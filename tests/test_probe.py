"""`qwen3-kit probe`: its logic on the tiny default on the CPU (what a GPU adds is memory, in tests/gpu and
scripts/gpu_check.py), its refusal without a GPU, and the pieces it computes with."""

import json
import os
import subprocess
import sys

import pytest

from kit.training.probe import OUT_OF_MEMORY, _Record, _trials, advice, flops_per_token, largest_fitting, peak_tflops
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def probed(tiny_dir, tmp_path_factory):
    """The probe of the smoke config with checkpointing on, as a user runs it; each line it printed, with the keys
    probe.json held at that moment."""
    out = tmp_path_factory.mktemp("probe")
    args = [sys.executable, "-m", "kit.cli", "probe", "configs/smoke.yaml", f"train.output_dir={out}",
            "train.gradient_checkpointing=true", "--price-per-hour", "2.5", "--steps", "2"]
    lines, path = [], out / "smoke" / "probe.json"
    with subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:
            if line.startswith("probe: "):
                lines.append((line.strip(), set(json.loads(path.read_text())) if path.is_file() else set()))
    assert proc.returncode == 0, "\n".join(line for line, _ in lines)
    return lines, json.loads(path.read_text())


def test_the_probe_measures_the_config_on_the_tiny_default(probed):
    _, found = probed
    assert found["backend"] == "hf" and found["device"] == "cpu" and found["card_gb"] is None
    for part in ("data", "full_length"):
        assert found[part]["fits"] and found[part]["steps"] == 2 and found[part]["tokens_per_s"] > 0
        assert found[part]["training"] and found[part]["checkpointing"]  # as training runs: checkpointing on
    assert found["full_length"]["tokens_per_step"] == 8 * 512  # batch x length, every token trained
    assert found["full_length"]["model_tflops"] > 0 and found["full_length"]["mfu"] is None  # no data sheet
    run = found["run"]
    assert run["steps"] == 100 and run["eta_s"] == round(found["data"]["s_per_step"] * 100)
    assert run["cost"] == round(found["data"]["s_per_step"] * 100 / 3600 * 2.5, 2)
    # the searches stop at twice the config's length and batch on a CPU; each trial trains with checkpointing on
    assert found["longest_seq"]["value"] == 1024 and found["longest_seq"]["trials"] == [
        {"length": 512, "fits": True, "peak_reserved_gb": None, "error": None},
        {"length": 1024, "fits": True, "peak_reserved_gb": None, "error": None}]
    assert found["largest_batch"]["value"] == 16
    assert found["advice"] == ["model.max_seq_length=1024 also fits at batch 8: room for longer rows"]


def test_each_measurement_is_saved_before_it_is_printed(probed):
    lines, _ = probed
    said = {line.split(":")[1].strip(): keys for line, keys in lines}
    assert "data" in said["your data"] and "run" not in said["your data"]
    assert "full_length" in said["full-length rows (8 x 1 x 512 tokens a step)"]
    assert "run" in said["the run"] and "longest_seq" not in said["the run"]
    assert [line for line, _ in lines][-1].startswith("probe: largest batch at length 512: 16")


def test_a_real_model_without_a_gpu_is_refused_in_one_line(tmp_path):
    env = {**os.environ, "QWEN3_KIT_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "kit.cli", "probe", "configs/qwen3-14b-math.yaml"], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: the probe measures Qwen3-14B on a GPU and none is usable here: ")
    assert "qwen3-kit probe configs/smoke.yaml" in line and not (tmp_path / "cache").exists()


def test_a_failed_trial_other_than_memory_stops_the_search_and_is_kept(tmp_path):
    """Unsloth once raised ValueError above the length it was loaded with: a result, saved, not a crash."""
    record = _Record(tmp_path / "probe.json", {})
    outcomes = {2048: {"fits": True}, 4096: {"fits": False, "error": "ValueError: labels longer than input_ids"}}
    found = _trials(lambda n, b: outcomes[n], record)("length", 2, 2048, 1024, 32768)
    assert found["value"] is None and found["error"].startswith("ValueError")
    assert [t["length"] for t in found["trials"]] == [2048, 4096]
    memory = _trials(lambda n, b: {"fits": n <= 3072, "error": None if n <= 3072 else OUT_OF_MEMORY}, record)
    assert memory("length", 2, 2048, 1024, 32768)["value"] == 3072


def test_largest_fitting_doubles_halves_then_bisects():
    tried = []

    def fits(n):
        tried.append(n)
        return n <= 13_000

    assert largest_fitting(fits, 2048, 1024, 32768) == 12288
    assert tried[:4] == [2048, 4096, 8192, 16384]
    tried.clear()
    assert largest_fitting(fits, 32768, 1024, 32768) == 12288 and tried[:3] == [32768, 16384, 8192]
    assert largest_fitting(lambda n: True, 2048, 1024, 32768) == 32768
    assert largest_fitting(lambda n: False, 2048, 1024, 32768) == 0
    assert largest_fitting(lambda n: n <= 5, 2, 1, 32) == 5


def test_advice_keeps_the_effective_batch(smoke_cfg):
    cfg = smoke_cfg("train.per_device_train_batch_size=8", "train.gradient_accumulation_steps=2")
    assert advice(cfg, False, 256, 4) == [
        "train.per_device_train_batch_size=4 train.gradient_accumulation_steps=4: fits at length 512, the same "
        "effective batch of 16",
        "model.max_seq_length=256: fits at batch 8 (longer rows: data.overlong)"]
    assert advice(cfg, True, 512, 16)[0].startswith("train.per_device_train_batch_size=16 "
                                                    "train.gradient_accumulation_steps=1: the same effective batch")
    assert "a smaller model" in advice(cfg, False, 0, 0)[-1]


def test_flops_count_lora_as_4n_plus_attention():
    from kit.models.tiny import qwen3_config
    from tests.shapes import shape_config

    config = qwen3_config(**shape_config("8B"))
    model, hardware = flops_per_token(config, 2048, lora_params=0, checkpointing=True)
    n = 36 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 12288) + 151936 * 4096  # matmul weights + lm_head
    attention = 12 * 36 * 2048 * 32 * 128
    assert model == 4 * n + attention
    assert hardware == model + 2 * (n - 151936 * 4096) + attention / 3  # checkpointing recomputes the layers' forward


def test_device_peaks_tell_form_factors_apart():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4 and peak_tflops("NVIDIA H200") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0 and peak_tflops("NVIDIA H100 NVL") == 835.0
    assert peak_tflops("NVIDIA GeForce RTX 4090") == 165.2 and peak_tflops("NVIDIA A800-SXM4-80GB") == 312.0
    assert peak_tflops("cpu") is None
