"""Random Qwen3 models at real shapes and the streamed merge stay near one tensor's memory, whatever the size."""

import json
import subprocess
import sys

import pytest

from kit.export.merge import MergeError, merge_lora
from tests.conftest import ROOT, run_script

BUILD = """
import json, resource, sys
from tests.shapes import build_random_qwen3
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
build_random_qwen3("1.7B", sys.argv[1], max_shard_size="1GB")
print(json.dumps({"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}))
"""


@pytest.fixture(scope="module")
def qwen3_1_7b(tmp_path_factory):
    """The 1.7B shape (3.4 GB in bf16, four shards), built in a fresh process that reports its peak RSS."""
    folder = tmp_path_factory.mktemp("shapes") / "1.7B"
    result = subprocess.run([sys.executable, "-c", BUILD, str(folder)], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, json.loads(result.stdout.strip().splitlines()[-1])["peak_gb"]


def test_building_a_real_shape_never_holds_the_model(qwen3_1_7b):
    from transformers import AutoConfig

    folder, peak_gb = qwen3_1_7b
    bf16_gb = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e9
    assert 3.3 < bf16_gb < 3.6 and len(list(folder.glob("*.safetensors"))) == 4
    assert peak_gb < 1.3 * bf16_gb, (peak_gb, bf16_gb)
    config = AutoConfig.from_pretrained(folder)
    assert (config.hidden_size, config.num_hidden_layers, str(config.dtype)) == (2048, 28, "torch.bfloat16")
    print(f"1.7B shape: {bf16_gb:.2f} GB written, peak RSS {peak_gb:.2f} GB")


def test_merge_peak_memory_stays_near_one_shard(qwen3_1_7b):
    """The GPU check's merge measurement (CPU only), in a fresh process."""
    folder, _ = qwen3_1_7b
    done = run_script("scripts/gpu_check.py", "--measure", "merge", json.dumps({"base": str(folder), "lora_r": 16}))
    result = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("RESULT "))
    assert result["weights_merged"] == 28 * 7 and result["cuda_used"] is False
    grown = result["peak_rss_merge_gb"] - result["rss_after_imports_gb"]
    assert grown < result["largest_tensor_gb"] + result["adapter_gb"], result
    print(json.dumps(result))


def test_merged_weights_are_the_base_plus_scaled_lora(qwen3_1_7b, tmp_path):
    """Every changed weight is W + scale * B @ A computed in fp32 and rounded once to bf16; every other tensor is the
    base's bytes; the shards, their tensors and their order are the base's."""
    import torch
    from safetensors import safe_open

    from kit.export.merge import load_lora
    from tests.shapes import build_random_adapter

    folder, _ = qwen3_1_7b
    adapter = build_random_adapter(folder, tmp_path / "adapter", r=8, seed=1)
    (tmp_path / "merged").mkdir()
    assert merge_lora(adapter, folder, tmp_path / "merged") == 28 * 7
    pairs, changed = load_lora(adapter), 0
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, "pt") as base, safe_open(tmp_path / "merged" / shard.name, "pt") as merged:
            assert list(merged.keys()) == list(base.keys())
            for name in base.keys():
                weight, got = base.get_tensor(name), merged.get_tensor(name)
                pair = pairs.get(name)
                expected = weight if pair is None else (weight.float() + pair.scale * pair.b @ pair.a).bfloat16()
                assert torch.equal(got, expected), name
                changed += pair is not None
    assert changed == len(pairs)


def test_an_adapter_for_another_shape_is_refused(qwen3_1_7b, tiny_dir, tmp_path):
    from tests.shapes import build_random_adapter

    folder, _ = qwen3_1_7b
    adapter = build_random_adapter(folder, tmp_path / "adapter", r=4)
    (tmp_path / "out").mkdir()
    with pytest.raises(MergeError, match=r"does not fit .*: model\.layers\.0\.\S+ is \(256, \d+\) in the base"):
        merge_lora(adapter, tiny_dir, tmp_path / "out")
