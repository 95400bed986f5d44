"""Random-weight Qwen3 models at the published shapes, and random LoRA adapters for them: what the GPU check,
tests/gpu and the merge tests measure on. Speed and memory do not depend on the weights' values.

    folder = build_random_qwen3("14B", "/tmp/14b")    # bf16, Qwen3's full vocabulary, the tiny tokenizer
    adapter = build_random_adapter(folder, "/tmp/a")  # a LoRA adapter for it, as a merge or a load sees one
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
    """A random-weight Qwen3 of `shape` with the tiny tokenizer in `folder`, built once. The architecture is laid out
    on the meta device (names and shapes, no memory) and each tensor is drawn and written on its own, so even 32B
    builds on the CPU in about one tensor's memory. The folder appears only when complete."""
    from kit.files import atomic_folder

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    with atomic_folder(folder) as tmp:
        tokenizer = tiny.build_tiny_tokenizer()
        config = tiny.tiny_config(tokenizer, **shape_config(shape))
        _write_random_weights(tmp, config, seed, max_shard_size)
        tiny.save_beside_weights(tmp, config, tokenizer)
    return folder


def _write_random_weights(folder: Path, config, seed: int, max_shard_size: str) -> None:
    """Qwen3's own initialisation (normal(0, initializer_range), norms at 1), drawn tensor by tensor into shards
    laid out as `save_pretrained` lays them out (huggingface_hub's splitter), tied embeddings stored once."""
    import torch
    from huggingface_hub import split_torch_state_dict_into_shards
    from transformers import Qwen3ForCausalLM

    from kit.export.shards import write_index

    dtype = config.dtype
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config).to(dtype)
    tied = set(model._tied_weights_keys or {}) if config.tie_word_embeddings else set()
    tensors = {name: t for name, t in model.state_dict().items() if name not in tied}
    order = {name: i for i, name in enumerate(tensors)}

    def draw(name: str):
        if name.endswith("norm.weight"):
            return torch.ones(tensors[name].shape, dtype=dtype)
        return _normal(tensors[name].shape, dtype, config.initializer_range, seed * 100_003 + order[name])

    split = split_torch_state_dict_into_shards(tensors, max_shard_size=max_shard_size)
    for filename, names in split.filename_to_tensors.items():
        write_file(folder / filename, {n: (tuple(tensors[n].shape), dtype) for n in names}, draw)
    if split.is_sharded:
        write_index(folder, split.tensor_to_filename, split.metadata["total_size"])


RANDOM_CHUNK = 1 << 24  # values per thread: normal_ runs on one core, so a large tensor is filled in parallel


def _normal(shape, dtype, std: float, seed: int):
    """A tensor of normal(0, std) values, the same for the same seed on any machine, drawn on every core."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import torch

    out = torch.empty(shape, dtype=dtype)
    flat = out.view(-1)

    def fill(start: int) -> None:
        generator = torch.Generator().manual_seed(seed * 65_537 + start // RANDOM_CHUNK)
        flat[start:start + RANDOM_CHUNK].normal_(0, std, generator=generator)

    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(0, flat.numel(), RANDOM_CHUNK)))
    return out


def write_file(path: Path, specs: Mapping[str, tuple], make: Callable[[str], object]) -> None:
    """A safetensors file of the tensors `specs` names as `{name: (shape, torch dtype)}`, in that order, each made
    by `make(name)` just before it is written: memory stays near one tensor (safetensors' own writer takes them
    all at once)."""
    import torch

    from kit.export.shards import encode_header

    header, _ = encode_header(specs)
    with open(path, "wb") as f:
        f.write(header)
        for name, (shape, dtype) in specs.items():
            tensor = make(name)
            if tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
                raise ValueError(f"{name}: made {tuple(tensor.shape)} {tensor.dtype}, declared {tuple(shape)} {dtype}")
            f.write(memoryview(tensor.contiguous().view(-1).view(torch.uint8).numpy()))


def build_random_adapter(base: Path, folder: Path, *, r: int = 32, seed: int = 0) -> Path:
    """A LoRA adapter with random A and B on all seven projections of the model in `base`, in peft's format with
    the base's tokenizer: what a trained adapter is to a merge or a load, without the training."""
    import torch
    from peft import LoraConfig
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from kit.export.merge import ADAPTER_PREFIX

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
               lambda name: _normal(specs[name][0], torch.float32, 0.02, seed * 100_003 + order[name]))
    LoraConfig(r=r, lora_alpha=r, target_modules=PROJECTIONS, task_type="CAUSAL_LM",
               base_model_name_or_path=str(base)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return Path(folder)
