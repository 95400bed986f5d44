"""scripts/gpu_check.py rehearsed on the CPU at the tiny shape, with only what the GPU machine has (the pack and the
image, tests/test_gpu_pack.py), so that a typo or a missing package cannot waste a lease."""

import json

import pytest

from scripts.gpu_check import padding_share
from tests.conftest import gpu_image_env, run_script

PARTS = ["preflight", "probe:tiny:hf", "search:tiny:hf", "tests", "grpo:tiny", "padding", "merge:tiny"]


@pytest.fixture(scope="module")
def image_env(request, tmp_path_factory):
    try:
        pack = request.getfixturevalue("gpu_pack")
    except pytest.skip.Exception:
        pack = None  # no pack built: hide only what pack.sh leaves out
    return gpu_image_env(tmp_path_factory.mktemp("gpu-image"), pack)


@pytest.fixture(scope="module")
def rehearsal(image_env, tmp_path_factory):
    out, copy = tmp_path_factory.mktemp("gpu-check"), tmp_path_factory.mktemp("OUT")
    models = tmp_path_factory.mktemp("models")
    stdout = run_script("scripts/gpu_check.py", "--out", str(out), "--copy-to", str(copy), "--models", str(models),
                        env=image_env).stdout
    return out, copy, models, stdout


def test_rehearsal_runs_every_part_at_the_tiny_shape(rehearsal):
    out, copy, _, stdout = rehearsal
    report = json.loads((out / "report.json").read_text())
    assert {name: p["status"] for name, p in report.items()} == {p.replace(":", "-"): "done" for p in PARTS}
    assert report["preflight"]["matmul_tflops"] > 0 and report["preflight"]["versions"]["torch"]
    assert "pip_check" in report["preflight"] and report["preflight"]["import_unsloth_s"] is None  # no GPU
    probe = report["probe-tiny-hf"]  # qwen3-kit probe itself, its probe.json the part's result
    assert probe["backend"] == "hf" and probe["full_length"]["fits"] and probe["full_length"]["checkpointing"]
    assert "longest_seq" not in probe and report["search-tiny-hf"]["longest_seq"]["value"] == 512
    assert report["search-tiny-hf"]["largest_batch"]["value"] == 4
    tests = report["tests"]
    assert tests["skipped"] == tests["tests"] > 0  # each GPU test skips, with its reason
    grpo = report["grpo-tiny"]  # the kit's own GRPO run: prompts, rewards, trainer, adapter
    assert grpo["backend"] == grpo["generation"] == "hf" and grpo["steps"] == 2 and grpo["step_s"] > 0
    assert grpo["rewards_logged"] == ["correct", "format"]
    merge = report["merge-tiny"]
    assert merge["shards"] > 1 and merge["weights_merged"] == 3 * 7 and merge["cuda_used"] is False
    assert report["padding"]["padded"] > report["padding"]["packed_bfd"] >= 0
    assert "| probe-tiny-hf | " in (out / "report.md").read_text() and "all parts done" in stdout
    # everything a part wrote was copied as it ended ($OUT on the device machine), probe.json included
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == sorted(p.relative_to(out) for p in out.rglob("*"))


def test_a_second_call_continues_instead_of_redoing(rehearsal, image_env):
    out, _, models, _ = rehearsal
    saved = {p.name: p.read_text() for p in out.glob("*.json") if p.stem != "report"}
    result = run_script("scripts/gpu_check.py", "--out", str(out), "--models", str(models), env=image_env)
    assert {p.name: p.read_text() for p in out.glob("*.json") if p.stem != "report"} == saved
    assert "[gpu_check]" not in result.stdout and "all parts done" in result.stdout


def test_a_part_cut_off_is_kept_as_such_and_run_again_next_call(tmp_path):
    """--budget 1: the first part starts (a call always makes progress), is stopped at its limit, saved as timed
    out; the second waits. The next call runs both."""
    args = ["scripts/gpu_check.py", "--out", str(tmp_path), "--parts", "preflight", "padding"]
    first = run_script(*args, "--budget", "1").stdout
    assert json.loads((tmp_path / "preflight.json").read_text())["status"] == "timed out"
    assert not (tmp_path / "padding.json").exists() and "still to run: preflight padding" in first
    second = run_script(*args).stdout
    assert json.loads((tmp_path / "preflight.json").read_text())["status"] == "done"
    assert "[gpu_check] padding: done" in second and "all parts done" in second


def test_work_that_needs_no_gpu_is_kept_off_the_lease():
    from importlib.util import module_from_spec, spec_from_file_location

    from tests.conftest import ROOT

    spec = spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    gpu_check = module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    assert not [p for p in gpu_check.GPU_PARTS if p.split(":")[0] in gpu_check.CPU_ONLY]
    assert all(gpu_check.LIMIT_S[p.split(":")[0]] < 600 for p in gpu_check.GPU_PARTS)  # a command runs 10 min
    first_call = ["preflight", "probe:8B:unsloth", "probe:8B:hf"]
    assert gpu_check.GPU_PARTS[:3] == first_call
    expected = sum(gpu_check.EXPECTED_S[p.split(":")[0]] for p in first_call) + gpu_check.BUILD_S["8B"]
    assert expected <= 540  # the first call answers unsloth against hf at 8B


def test_padding_share():
    assert padding_share([1, 3], 2) == pytest.approx(1 / 3)  # one batch padded to 3: 2 of 6 tokens are padding
    assert padding_share([1, 3], 2, packed=True, seq=4) == 0.0  # one full pack
    assert padding_share([3, 3, 3], 2, packed=True, seq=4) == 0.0  # three packs of 3, batched as [3, 3] and [3]
    assert padding_share([2, 2, 3], 2, packed=True, seq=4) == pytest.approx(1 / 8)  # packs 4 and 3: one pad token
