"""The one GPU command, rehearsed on the CPU at the tiny shape so that a typo cannot waste GPU time."""

import json

import pytest

from kit.perf import flops_per_token, longest_fitting, peak_tflops
from tests.conftest import ROOT, run_script

# What the GPU machine's image lacks and ../shared/gpu/pack.sh leaves out: the rehearsal runs without them.
ABSENT_ON_GPU = ["matplotlib", "wandb", "modelscope", "jupyter", "nbclient", "ipykernel"]


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    hide = tmp_path_factory.mktemp("gpu-image")
    # None in sys.modules: `import x` fails and importlib.util.find_spec("x") is None, as for a package not installed.
    (hide / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({ABSENT_ON_GPU!r}))\n")
    stdout = run_script("scripts/gpu_check.py", "--out", str(out), env={"PYTHONPATH": f"{hide}:{ROOT}"}).stdout
    return out, stdout


def test_rehearsal_runs_every_part_at_the_tiny_shape(rehearsal):
    out, stdout = rehearsal
    report = json.loads((out / "report.json").read_text())
    assert report["env"]["measured_bf16_matmul_tflops"] > 0 and report["env"]["versions"]["torch"]
    assert report["padding"]["padded"] > report["padding"]["packed_bfd"] >= 0
    tests = report["tests"]
    assert tests["exit_code"] == 0 and tests["skipped"] == tests["tests"] > 0  # each GPU test skips, with its reason
    (hf,) = report["bench-tiny"]["results"].values()
    assert hf["backend"] == "hf" and hf["tokens_per_s"] > 0 and hf["steps"] == 8 and hf["mfu_of_matmul"] > 0
    assert hf["longest_seq"] == 512  # the search's training steps ran (no cap without a GPU)
    assert report["bench-tiny"]["skipped"] == {"unsloth": "needs a CUDA GPU"}
    merge = report["merge-tiny"]
    assert merge["shards"] > 1 and merge["weights_merged"] == 4 * 7 and merge["cuda_used"] is False
    grpo = report["grpo-tiny"]  # the kit's own GRPO run: prompts, rewards, trainer, adapter
    assert grpo["backend"] == grpo["generation"] == "hf" and grpo["steps"] == 2 and grpo["step_s"] > 0
    assert grpo["completion_tokens_per_s"] > 0 and grpo["rewards_logged"] == ["correct", "format"]
    markdown = (out / "report.md").read_text()
    assert "| tiny | hf |" in markdown and "| qwen3-tiny |" in markdown and "python scripts/gpu_check.py" in markdown
    assert "| tiny | hf | hf | 4 x 32 |" in markdown
    assert "all parts done" in stdout


def test_a_second_call_continues_instead_of_redoing(rehearsal):
    out, _ = rehearsal
    saved = {p.name: p.read_text() for p in out.glob("*.json") if p.stem != "report"}
    result = run_script("scripts/gpu_check.py", "--out", str(out))
    assert {p.name: p.read_text() for p in out.glob("*.json") if p.stem != "report"} == saved
    assert "[gpu_check]" not in result.stdout and "all parts done" in result.stdout


def test_stop_after_leaves_the_rest_for_the_next_call(tmp_path):
    result = run_script("scripts/gpu_check.py", "--out", str(tmp_path), "--parts", "env", "padding",
                        "--stop-after", "0")
    assert (tmp_path / "env.json").is_file() and not (tmp_path / "padding.json").exists()
    assert "still to run: padding" in result.stdout


def test_longest_fitting_doubles_then_bisects():
    tried = []

    def fits(n):
        tried.append(n)
        return n <= 13_000

    assert longest_fitting(fits, 1024, 32768) == 12288
    assert tried[:5] == [1024, 2048, 4096, 8192, 16384]
    assert longest_fitting(lambda n: True, 1024, 32768) == 32768
    assert longest_fitting(lambda n: False, 1024, 32768) == 0


def test_flops_count_lora_as_4n_plus_attention():
    from kit.models.tiny import qwen3_config

    config = qwen3_config("8B")
    model, hardware = flops_per_token(config, 2048, lora_params=0, checkpointing=True)
    n = 36 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 12288) + 151936 * 4096  # matmul weights + lm_head
    attention = 12 * 36 * 2048 * 32 * 128
    assert model == 4 * n + attention
    assert hardware == model + 2 * (n - 151936 * 4096) + attention / 3  # checkpointing recomputes the layers' forward


def test_device_peaks_tell_form_factors_apart():
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe") == 756.0 and peak_tflops("NVIDIA H100 NVL") == 835.0
    assert peak_tflops("NVIDIA GeForce RTX 4090") == 165.2 and peak_tflops("NVIDIA A800-SXM4-80GB") == 312.0
    assert peak_tflops("cpu") is None
