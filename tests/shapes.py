"""Random-weight Qwen3 models at the published shapes, and random LoRA adapters for them: what the GPU check,
tests/gpu and the merge tests measure on. Speed and memory do not depend on the weights' values.

    folder = build_random_qwen3("14B", "/tmp/14b")    # bf16, Qwen3's full vocabulary, the tiny tokenizer
    adapter = build_random_adapter(folder, "/tmp/a")  # a LoRA adapter for it, as a merge or a load sees one
"""

from __future__ import annotations

from pathlib import Path

from kit.models import tiny
from kit.models.profiles import HEAD_DIM, PROJECTIONS, VOCAB, find


def shape_config(shape: str) -> dict:
    """The `Qwen3Config` values of a published shape ("0.6B" ... "32B"); {} for "tiny", the kit's default."""
    if shape == "tiny":
        return {}
    m = find(shape)
    return dict(vocab_size=VOCAB, hidden_size=m.hidden, intermediate_size=m.intermediate, num_hidden_layers=m.layers,
                num_attention_heads=m.heads, num_key_value_heads=m.kv_heads, head_dim=HEAD_DIM,
                tie_word_embeddings=m.tied, max_position_embeddings=40960, dtype="bfloat16")


def build_random_qwen3(shape: str, folder: str | Path, *, seed: int = 0, max_shard_size: str = "5GB") -> Path:
    """A random-weight Qwen3 of `shape` in `folder`, built once (kit.models.tiny.build_random_qwen3)."""
    return tiny.build_random_qwen3(folder, seed=seed, max_shard_size=max_shard_size, **shape_config(shape))


def build_random_adapter(base: Path, folder: Path, *, r: int = 32, seed: int = 0) -> Path:
    """A LoRA adapter with random A and B on all seven projections of the model in `base`, in peft's format with
    the base's tokenizer: what a trained adapter is to a merge or a load, without the training."""
    import torch
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from kit.export.merge import ADAPTER_PREFIX
    from kit.export.shards import write_file

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(base))
    specs = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] in PROJECTIONS:
            specs[f"{ADAPTER_PREFIX}{name}.lora_A.weight"] = ((r, module.in_features), torch.float32)
            specs[f"{ADAPTER_PREFIX}{name}.lora_B.weight"] = ((module.out_features, r), torch.float32)
    order = {name: i for i, name in enumerate(specs)}
    Path(folder).mkdir(parents=True, exist_ok=True)
    write_file(Path(folder) / "adapter_model.safetensors", specs,
               lambda name: tiny._normal(specs[name][0], torch.float32, 0.02, seed * 100_003 + order[name]))
    LoraConfig(r=r, lora_alpha=r, target_modules=PROJECTIONS, task_type="CAUSAL_LM",
               base_model_name_or_path=str(base)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return Path(folder)
