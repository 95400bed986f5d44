"""Merge a LoRA adapter into 16-bit weights on the CPU, one tensor at a time: no GPU, never the whole model in memory.

    merged = merge_lora(adapter_dir, base_dir, out_dir)      # shards, index and config.json, in bf16

Each safetensors shard of the base is read tensor by tensor; a weight the adapter targets gets
`scale * B @ A` added in fp32, and every floating-point tensor is written in bf16 into a shard of the same name.
The resident memory stays near the largest tensor plus the adapter, so a 32B model merges on a machine with a
24 GB GPU and 64 GB of RAM. peft's `merge_and_unload` computes the same sum with the model loaded whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError

ADAPTER_PREFIX = "base_model.model."  # peft's name for the wrapped model in adapter_model.safetensors


class MergeError(KitError, RuntimeError):
    pass


@dataclass
class LoraPair:
    a: object  # (r, in) fp32
    b: object  # (out, r) fp32
    scale: float


def load_lora(adapter: Path) -> dict[str, LoraPair]:
    """The adapter's LoRA pairs by the base weight they change (`model.layers.0.self_attn.q_proj.weight`)."""
    from peft import PeftConfig
    from safetensors.torch import load_file

    config = PeftConfig.from_pretrained(str(adapter))
    unsupported = [what for what, present in (
        ("DoRA", getattr(config, "use_dora", False)), ("rank_pattern", bool(getattr(config, "rank_pattern", None))),
        ("alpha_pattern", bool(getattr(config, "alpha_pattern", None))),
        ("modules_to_save", bool(getattr(config, "modules_to_save", None))),
        (f"bias={config.bias}", getattr(config, "bias", "none") != "none")) if present]
    if getattr(config, "peft_type", None) != "LORA" or unsupported:
        raise MergeError(f"{adapter}: the streamed merge handles plain LoRA adapters (as the kit trains), not "
                         f"{', '.join(unsupported) or config.peft_type}.")
    scale = config.lora_alpha / (config.r ** 0.5 if config.use_rslora else config.r)
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    pairs = {}
    for name, a in tensors.items():
        if ".lora_A." not in name:
            continue
        module = name.removeprefix(ADAPTER_PREFIX).split(".lora_A.")[0]
        b = tensors[name.replace(".lora_A.", ".lora_B.")]
        pairs[f"{module}.weight"] = LoraPair(a.float(), b.float(), scale)
    return pairs


def merged_tensor(tensor, pair: LoraPair | None):
    """A base tensor as it goes into the merged model: plus its LoRA update (in fp32), floats in bf16."""
    import torch

    if pair is not None:
        return (tensor.float() + pair.scale * (pair.b @ pair.a)).to(torch.bfloat16)
    return tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor


def merge_lora(adapter: Path, base: Path, out: Path) -> int:
    """Write `base` with `adapter` merged into `out` (an existing, empty folder): shards, index, config.json.

    Returns the number of weights changed. Raises MergeError when the adapter does not fit the base.
    """
    import torch
    from transformers import AutoConfig

    from kit.export.shards import INDEX_NAME, read_header, read_tensor, shard_files, write_file, write_index

    pairs = load_lora(adapter)
    applied, weight_map, total = set(), {}, 0
    for shard in shard_files(base):
        entries, metadata = read_header(shard)
        for name, entry in entries.items():
            if name in pairs and entry.shape != (pairs[name].b.shape[0], pairs[name].a.shape[1]):
                raise MergeError(f"{adapter} does not fit {base}: {name} is {entry.shape} in the base, the adapter "
                                 f"changes {(pairs[name].b.shape[0], pairs[name].a.shape[1])}.")
        specs = {name: (e.shape, torch.bfloat16 if e.is_float else e.torch_dtype) for name, e in entries.items()}
        total += write_file(out / shard.name, specs,
                            lambda name, s=shard, e=entries: merged_tensor(read_tensor(s, e[name]), pairs.get(name)),
                            metadata)
        applied |= pairs.keys() & entries.keys()
        weight_map |= dict.fromkeys(entries, shard.name)
    missing = sorted(pairs.keys() - applied)
    if missing:
        raise MergeError(f"{adapter} does not fit {base}: the base has no {missing[0]} "
                         f"({len(missing)} of the adapter's {len(pairs)} weights are missing).")
    if (base / INDEX_NAME).is_file():
        write_index(out, weight_map, total)
    config = AutoConfig.from_pretrained(base)
    config.dtype = torch.bfloat16
    config.save_pretrained(out)
    return len(applied)
