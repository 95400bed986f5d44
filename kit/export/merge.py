"""Merge a LoRA adapter into 16-bit weights on the CPU, one tensor at a time: no GPU, never the whole model in memory.

    merged = merge_lora(adapter_dir, base_dir, out_dir)      # shards, index and config.json, in bf16

Each safetensors shard of the base is written in order: a weight the adapter targets is read into one reused
buffer, gets `scale * B @ A` added in place (in fp32, a cache-sized slice at a time) and is written in bf16; every
other tensor is copied by the kernel (sendfile), never entering this process, or converted to bf16 if it is not.
Memory grows by the adapter in fp32 plus, per shard in flight, the largest changed weight: about 1.6 GB at 32B with
r=32 (1.07 GB of adapter, 2 x 0.26 GB down_proj). peft's `merge_and_unload` computes the same sum with the model
loaded whole. Shards go in parallel, one per core, and the kernel reads the next tensor while one is merged.
"""

from __future__ import annotations

import os
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


WORK_VALUES = 1 << 18  # fp32 values of a weight merged at a time: one buffer that stays in the CPU's cache


def add_lora(weight, pair: LoraPair, work) -> None:
    """`weight += scale * B @ A` in place, computed in fp32 through the buffer `work`, rounded once to its dtype."""
    rows = max(1, work.numel() // weight.shape[1])
    for start in range(0, weight.shape[0], rows):
        part = weight[start:start + rows]
        total = work[:part.numel()].view(part.shape).copy_(part)
        part.copy_(total.addmm_(pair.b[start:start + rows], pair.a, alpha=pair.scale))


def _merge_shard(shard: Path, entries: dict, metadata: dict, target: Path, pairs: dict[str, LoraPair]) -> int:
    """Write one merged shard in order; returns its bytes of tensor data. A changed weight is written over the
    kernel's copy of it: filling fresh page-cache pages from a process cost 3.6x the kernel's copy on the VM measured,
    overwriting them little (docs/benchmarks.md). A float tensor not in bf16 is read and written converted."""
    import torch

    from kit.export.shards import encode_header

    header, size = encode_header({name: (e.shape, torch.bfloat16 if e.is_float else e.torch_dtype)
                                  for name, e in entries.items()}, metadata)
    read_here = {name for name, e in entries.items() if name in pairs or e.is_float and e.dtype != "BF16"}
    read = torch.empty(max((entries[name].end - entries[name].start for name in read_here), default=0),
                       dtype=torch.uint8)
    work = torch.empty(WORK_VALUES, dtype=torch.float32)
    with open(shard, "rb", buffering=0) as src, open(target, "wb", buffering=0) as dst:
        dst.write(header)
        for (name, entry), after in zip(entries.items(), [*list(entries.values())[1:], None], strict=True):
            if after:  # the kernel reads the next tensor while this one is merged and written
                os.posix_fadvise(src.fileno(), after.start, after.end - after.start, os.POSIX_FADV_WILLNEED)
            at = dst.tell()
            if entry.dtype == "BF16" or not entry.is_float:
                _copy(src, dst, entry.start, entry.end - entry.start)
            if name in read_here:
                weight = read[:entry.end - entry.start]
                if os.preadv(src.fileno(), [weight.numpy()], entry.start) != weight.numel():
                    raise MergeError(f"{shard} is shorter than its header says: the download is incomplete.")
                weight = weight.view(entry.torch_dtype).view(entry.shape)
                if name in pairs:
                    add_lora(weight, pairs[name], work)
                data = weight.to(torch.bfloat16).view(-1).view(torch.uint8).numpy()
                if os.pwrite(dst.fileno(), data, at) != data.nbytes:
                    raise MergeError(f"{target} was cut short: the disk is full.")
                dst.seek(at + data.nbytes)
        os.fsync(dst.fileno())  # on disk before the export is renamed into place, while other shards still work
    return size


def _copy(src, dst, offset: int, count: int) -> None:
    """Bytes from one file to the other by the kernel (sendfile), never through this process's memory."""
    while count:
        done = os.sendfile(dst.fileno(), src.fileno(), offset, count)
        if not done:
            raise MergeError(f"{src.name} is shorter than its header says: the download is incomplete.")
        offset, count = offset + done, count - done


def merge_lora(adapter: Path, base: Path, out: Path) -> int:
    """Write `base` with `adapter` merged into `out` (an existing, empty folder): shards, index, config.json.

    One thread per shard and core: torch and system calls release the GIL, so threads use the cores without
    processes' torch imports and adapter copies.
    Returns the number of weights changed. Raises MergeError when the adapter does not fit the base.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from transformers import AutoConfig

    from kit.export.shards import INDEX_NAME, read_header, shard_files, write_index

    pairs = load_lora(adapter)
    headers = {shard: read_header(shard) for shard in shard_files(base)}
    weight_map = {name: shard.name for shard, (entries, _) in headers.items() for name in entries}
    shapes = {name: entry.shape for entries, _ in headers.values() for name, entry in entries.items()}
    for name, pair in pairs.items():
        if name in shapes and shapes[name] != (pair.b.shape[0], pair.a.shape[1]):
            raise MergeError(f"{adapter} does not fit {base}: {name} is {shapes[name]} in the base, the adapter "
                             f"changes {(pair.b.shape[0], pair.a.shape[1])}.")
    missing = sorted(pairs.keys() - weight_map.keys())
    if missing:
        raise MergeError(f"{adapter} does not fit {base}: the base has no {missing[0]} "
                         f"({len(missing)} of the adapter's {len(pairs)} weights are missing).")
    with ThreadPoolExecutor(min(len(headers), os.cpu_count() or 1)) as pool:
        total = sum(pool.map(lambda shard: _merge_shard(shard, *headers[shard], out / shard.name, pairs), headers))
    if (base / INDEX_NAME).is_file():
        write_index(out, weight_map, total)
    config = AutoConfig.from_pretrained(base)
    config.dtype = torch.bfloat16
    config.save_pretrained(out)
    return len(pairs)
