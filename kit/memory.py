"""Estimate peak GPU memory for LoRA on Qwen3, and pick the largest model and batch that fit a GPU.

    estimate("14B", seq_len=2048, batch=2).total_gb        # about 14 GB with unsloth
    recommend(24)                                         # -> the largest Qwen3 and batch for a 24 GB card

The formula (docs/memory.md compares it with published figures): weights (4-bit linears at 0.516 bytes per
parameter with their quantization constants, a share kept 16-bit by Unsloth's dynamic quantization, 16-bit
embeddings and head) + LoRA (fp32 weights and grads, optimizer state) + activations (with checkpointing: the
saved layer inputs, offloaded to CPU by Unsloth, plus one layer's recompute) + logits (full fp32 for `hf`,
chunked by Unsloth's fused loss) + a fixed CUDA context/allocator overhead.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from kit.qwen3 import FAMILY, HEAD_DIM, TRAINABLE, VOCAB

GB = 1e9
NF4_BYTES = 0.516  # 4 bits + double-quantized absmax per 64-weight block
DYNAMIC_16BIT_SHARE = 0.05  # Unsloth dynamic 4-bit keeps a few sensitive linears in 16-bit (assumed share)
OPTIMIZER_BYTES = {"adamw_8bit": 2, "adamw_torch": 8}
CUDA_OVERHEAD_GB = 1.0  # context, cuBLAS workspace, allocator slack


@dataclass
class Estimate:
    size: str
    weights_gb: float
    lora_gb: float
    activations_gb: float
    logits_gb: float
    overhead_gb: float

    @property
    def total_gb(self) -> float:
        return self.weights_gb + self.lora_gb + self.activations_gb + self.logits_gb + self.overhead_gb

    def as_dict(self) -> dict:
        return {**{k: round(v, 2) if isinstance(v, float) else v for k, v in asdict(self).items()},
                "total_gb": round(self.total_gb, 2)}

    def __str__(self) -> str:
        return (f"Qwen3-{self.size}: ~{self.total_gb:.1f} GB peak (weights {self.weights_gb:.1f}, LoRA+optimizer "
                f"{self.lora_gb:.1f}, activations {self.activations_gb:.1f}, logits {self.logits_gb:.1f}, "
                f"overhead {self.overhead_gb:.1f})")


def estimate(size: str, *, load_in_4bit: bool = True, lora_r: int = 32, targets: list[str] | None = None,
             seq_len: int = 2048, batch: int = 2, gradient_checkpointing: bool = True,
             backend: str = "unsloth", optim: str = "adamw_8bit") -> Estimate:
    """Peak training memory of LoRA on Qwen3-`size` ("0.6B" ... "32B") for one micro-batch of `batch` x `seq_len`."""
    model = FAMILY[size]
    hidden, inter, layers, heads, kv = model.hidden, model.intermediate, model.layers, model.heads, model.kv_heads
    shapes = model.linear_shapes()
    targets = targets or list(shapes)
    linear = model.linear_params()
    embed = model.embedding_params() * 2
    if load_in_4bit:
        weights = linear * NF4_BYTES + embed
        if backend == "unsloth":
            weights += linear * DYNAMIC_16BIT_SHARE * (2 - NF4_BYTES)
    else:
        weights = linear * 2 + embed
    lora_params = layers * lora_r * sum(i + o for name, (i, o) in shapes.items() if name in targets)
    lora = lora_params * (4 + 4 + OPTIMIZER_BYTES.get(optim, 8))
    tokens = batch * seq_len
    layer_work = tokens * (4 * hidden + 2 * heads * HEAD_DIM + 2 * kv * HEAD_DIM + 4 * inter) * 2
    if gradient_checkpointing:
        kept = 2 if backend == "unsloth" else layers  # unsloth offloads the saved layer inputs to CPU
        activations = kept * tokens * hidden * 2 + layer_work
    else:
        activations = layers * layer_work
    # hf: bf16 logits, their fp32 upcast and its gradient; unsloth's fused loss works in chunks.
    logits = tokens * VOCAB * (10 if backend == "hf" else 1)
    logits = min(logits, 0.5 * GB) if backend == "unsloth" else logits
    return Estimate(size, weights / GB, lora / GB, activations / GB, logits / GB, CUDA_OVERHEAD_GB)


def recommend(gpu_gb: float, *, seq_len: int = 2048, backend: str = "unsloth", lora_r: int = 32,
              headroom: float = 0.92) -> tuple[str, int, Estimate] | None:
    """The largest trainable Qwen3 and batch (8, 4, 2, 1) whose estimate fits `headroom` of the GPU, or None."""
    for size in reversed(TRAINABLE):
        for batch in (8, 4, 2, 1):
            est = estimate(size, seq_len=seq_len, batch=batch, backend=backend, lora_r=lora_r)
            if est.total_gb <= gpu_gb * headroom:
                return size, batch, est
    return None


def plan_table(gpus: tuple[int, ...] = (24, 32, 48, 80), *, seq_len: int = 2048, backend: str = "unsloth") -> str:
    """A printed table: for each GPU size, the largest Qwen3 and batch that fit."""
    lines = [f"{'GPU':>6}  {'largest Qwen3':<14}{'batch':>6}{'estimate':>10}   (seq {seq_len}, {backend}, LoRA r=32)"]
    for gb in gpus:
        pick = recommend(gb, seq_len=seq_len, backend=backend)
        lines.append(f"{gb:>4} GB  " + (f"{'Qwen3-' + pick[0]:<14}{pick[1]:>6}{pick[2].total_gb:>8.1f} GB"
                                         if pick else "nothing fits"))
    return "\n".join(lines)
