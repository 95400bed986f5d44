"""Safetensors files read and written one tensor at a time, so no step ever holds a whole model in memory.

    header = read_header(path)                       # {name: Entry(dtype, shape, start, end)}, nothing else read
    header_bytes, data_size = encode_header({name: (shape, torch.bfloat16)})

The 16-bit merge for vLLM goes through here (and tests/shapes.py's random-weight models at real shapes). The format
(github.com/huggingface/safetensors): an 8-byte little-endian header length, a JSON header naming each tensor's
dtype, shape and byte range, then the bytes. `safetensors.safe_open` maps a whole shard into memory; these read and
write each tensor with its own call, so the resident memory stays near the largest tensor, not the shard.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DTYPE_NAMES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64",
               "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
INDEX_NAME = "model.safetensors.index.json"


@dataclass(frozen=True)
class Entry:
    dtype: str  # the safetensors name: BF16, F32, ...
    shape: tuple[int, ...]
    start: int  # absolute byte offsets in the file
    end: int

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, next(k for k, v in DTYPE_NAMES.items() if v == self.dtype))

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F64", "F32", "F16", "BF16")


def read_header(path: Path) -> tuple[dict[str, Entry], dict[str, str]]:
    """The tensors of a safetensors file (in file order) and its metadata, reading only the header."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > path.stat().st_size - 8:  # not a safetensors file, or one cut inside its header
            raise ValueError(f"a header of {length} bytes in a file of {path.stat().st_size}")
        header = json.loads(f.read(length))
    metadata = header.pop("__metadata__", {}) or {}
    base = 8 + length
    entries = {name: Entry(h["dtype"], tuple(h["shape"]), base + h["data_offsets"][0], base + h["data_offsets"][1])
               for name, h in header.items()}
    return dict(sorted(entries.items(), key=lambda item: item[1].start)), metadata


def encode_header(specs: Mapping[str, tuple], metadata: dict[str, str] | None = None) -> tuple[bytes, int]:
    """The header of a file holding `specs` (`{name: (shape, torch dtype)}`) in that order, with its 8-byte length,
    and the bytes of tensor data that follow it."""
    import numpy as np
    import torch

    header, offset = {}, 0
    for name, (shape, dtype) in specs.items():
        size = int(np.prod(shape, dtype=np.int64)) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPE_NAMES[str(dtype).removeprefix("torch.")], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(encoded)) + encoded, offset


def write_index(folder: Path, weight_map: dict[str, str], total_size: int) -> None:
    """The index transformers and vLLM read to find each tensor's shard."""
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def shard_files(folder: Path) -> list[Path]:
    """A model folder's weight files: those its index names, or the single `model.safetensors`."""
    index = folder / INDEX_NAME
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    return sorted(folder.glob("*.safetensors"))
