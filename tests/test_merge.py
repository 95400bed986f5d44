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


# The fast layer: a small Qwen3 saved by transformers (one file in fp32, or bf16 shards with an index) and a LoRA
# adapter made by peft, merged in seconds; peft's `merge_and_unload` of the same adapter is the reference.
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _small_model(tmp_path, *, sharded: bool, rslora: bool):
    """(base folder, adapter folder): the base as transformers saves it, an adapter whose B is far from zero."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen3ForCausalLM

    from kit.models.tiny import qwen3_config

    torch.manual_seed(0)
    config = qwen3_config(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16 if sharded else torch.float32)
    base = tmp_path / "base"
    model.save_pretrained(base, max_shard_size="60KB" if sharded else "1GB")
    lora = get_peft_model(model.float(), LoraConfig(r=4, lora_alpha=8, use_rslora=rslora, target_modules=PROJECTIONS))
    for name, param in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)  # a fresh adapter's B is zero: the merge would change nothing
    lora.save_pretrained(tmp_path / "adapter")
    return base, tmp_path / "adapter"


@pytest.mark.parametrize("sharded", [False, True], ids=["one-fp32-file", "bf16-shards"])
@pytest.mark.parametrize("rslora", [False, True], ids=["lora", "rslora"])
def test_streamed_merge_equals_peft_merge_and_unload(tmp_path, sharded, rslora):
    """For rsLoRA (scale alpha / sqrt(r)) as for LoRA (alpha / r), from one file or several shards: every weight of
    the merged folder is peft's merge of the same adapter to the one rounding to bf16; the index maps each tensor to
    its shard and counts the bytes written, and the config says bf16."""
    import torch
    from peft import PeftModel
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    base, adapter = _small_model(tmp_path, sharded=sharded, rslora=rslora)
    assert (base / "model.safetensors.index.json").is_file() == sharded
    merged = tmp_path / "merged"
    merged.mkdir()
    assert merge_lora(adapter, base, merged) == 2 * len(PROJECTIONS)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                          str(adapter)).merge_and_unload().state_dict()
    got = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.bfloat16).state_dict()
    assert got.keys() == reference.keys()
    for name, weight in reference.items():
        torch.testing.assert_close(got[name].float(), weight, rtol=2**-8, atol=1e-7, msg=name)
    assert json.loads((merged / "config.json").read_text())["dtype"] == "bfloat16"
    shards = sorted(p.name for p in merged.glob("*.safetensors"))
    assert shards == sorted(p.name for p in base.glob("*.safetensors")) and (len(shards) > 1) == sharded
    tensors = {}
    for shard in shards:
        with safe_open(merged / shard, "pt") as f:
            tensors |= {name: (shard, f.get_tensor(name)) for name in f.keys()}
    assert all(t.dtype == torch.bfloat16 for _, t in tensors.values())
    if sharded:
        index = json.loads((merged / "model.safetensors.index.json").read_text())
        assert index["weight_map"] == json.loads((base / "model.safetensors.index.json").read_text())["weight_map"]
        assert index["weight_map"] == {name: shard for name, (shard, _) in tensors.items()}
        assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for _, t in tensors.values())
    else:
        assert not (merged / "model.safetensors.index.json").exists()


@pytest.mark.parametrize("sharded", [False, True], ids=["one-fp32-file", "bf16-shards"])
def test_a_tensor_that_is_not_floats_is_copied_as_it_is(tmp_path, sharded):
    """Integer buffers some checkpoints carry (position ids, quantization maps) keep their dtype and bytes."""
    import torch
    from safetensors.torch import load_file, save_file

    base, adapter = _small_model(tmp_path, sharded=sharded, rslora=False)
    shard = sorted(base.glob("*.safetensors"))[0]
    tensors, ids = load_file(shard), torch.arange(-3, 40, dtype=torch.int64)
    save_file({**tensors, "model.position_ids": ids}, shard, metadata={"format": "pt"})
    if sharded:
        index = json.loads((base / "model.safetensors.index.json").read_text())
        index["weight_map"]["model.position_ids"] = shard.name
        (base / "model.safetensors.index.json").write_text(json.dumps(index))
    (tmp_path / "merged").mkdir()
    merge_lora(adapter, base, tmp_path / "merged")
    merged = load_file(tmp_path / "merged" / shard.name)
    assert merged["model.position_ids"].dtype == torch.int64 and torch.equal(merged["model.position_ids"], ids)
    assert merged.keys() == tensors.keys() | {"model.position_ids"}


def test_a_merge_through_a_small_buffer_adds_every_row():
    """The sum is computed a slice of rows at a time: any buffer size gives every row its `scale * B @ A`."""
    import torch

    from kit.export.merge import LoraPair, add_lora

    torch.manual_seed(0)
    weight, pair = torch.randn(7, 5), LoraPair(torch.randn(2, 5), torch.randn(7, 2), 1.5)
    expected = weight + 1.5 * pair.b @ pair.a
    for values in (5, 8, 10, 35, 100):  # one row, one and a half, two, all rows, more
        got = weight.clone()
        add_lora(got, pair, torch.empty(values))
        torch.testing.assert_close(got, expected, msg=str(values))


def test_an_adapter_the_streamed_merge_cannot_do_is_refused(tmp_path):
    base, adapter = _small_model(tmp_path, sharded=False, rslora=False)
    config = json.loads((adapter / "adapter_config.json").read_text())
    for change, named in [({"use_dora": True}, "DoRA"), ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
                          ({"bias": "all"}, "bias=all"), ({"rank_pattern": {"q_proj": 8}}, "rank_pattern"),
                          ({"alpha_pattern": {"q_proj": 8}}, "alpha_pattern")]:
        (adapter / "adapter_config.json").write_text(json.dumps(config | change))
        with pytest.raises(MergeError, match=rf"handles plain LoRA adapters \(as the kit trains\), not {named}\.$"):
            merge_lora(adapter, base, tmp_path)


def test_an_adapter_for_weights_the_base_lacks_is_refused(tmp_path):
    from safetensors.torch import load_file, save_file

    base, adapter = _small_model(tmp_path, sharded=False, rslora=False)
    tensors = load_file(adapter / "adapter_model.safetensors")
    save_file({name.replace("layers.1.", "layers.7."): t for name, t in tensors.items()},
              adapter / "adapter_model.safetensors")
    with pytest.raises(MergeError, match=r"the base has no model\.layers\.7\.\S+ \(7 of the adapter's 14 weights"):
        merge_lora(adapter, base, tmp_path)


@pytest.mark.parametrize("sharded", [False, True], ids=["fp32-converted", "bf16-copied"])
def test_a_base_shard_cut_short_is_named_as_an_incomplete_download(tmp_path, sharded):
    from kit.export.shards import read_header

    base, adapter = _small_model(tmp_path, sharded=sharded, rslora=False)
    shard = sorted(base.glob("*.safetensors"))[-1]
    entries, _ = read_header(shard)
    with open(shard, "r+b") as f:
        f.truncate(max(e.end for e in entries.values()) - 2)
    (tmp_path / "merged").mkdir()
    with pytest.raises(MergeError, match=rf"{shard} is shorter than its header says: the download is incomplete"):
        merge_lora(adapter, base, tmp_path / "merged")
