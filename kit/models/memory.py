"""Estimate peak GPU memory for LoRA on Qwen3, and pick the largest model and batch that fit a GPU.

    estimate("14B", seq_len=2048, batch=2).total_gb        # about 14 GB with unsloth

docs/memory.md gives the formula's terms and compares it with published figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from kit.models.profiles import HEAD_DIM, TRAINABLE, VOCAB, find
from kit.paths import PROJECT_ROOT

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
    generation_gb: float = 0.0  # GRPO: the KV cache of a step's completions

    @property
    def total_gb(self) -> float:
        return (self.weights_gb + self.lora_gb + self.activations_gb + self.logits_gb + self.overhead_gb
                + self.generation_gb)

    def __str__(self) -> str:
        generation = f", generation {self.generation_gb:.1f}" if self.generation_gb else ""
        return (f"Qwen3-{self.size}: ~{self.total_gb:.1f} GB peak (weights {self.weights_gb:.1f}, LoRA+optimizer "
                f"{self.lora_gb:.1f}, activations {self.activations_gb:.1f}, logits {self.logits_gb:.1f}, "
                f"overhead {self.overhead_gb:.1f}{generation})")


def estimate(size: str, *, load_in_4bit: bool = True, lora_r: int = 32, targets: list[str] | None = None,
             seq_len: int = 2048, batch: int = 2, gradient_checkpointing: bool = True,
             backend: str = "unsloth", optim: str = "adamw_8bit") -> Estimate:
    """Peak training memory of LoRA on Qwen3-`size` ("0.6B" ... "32B") for one micro-batch of `batch` x `seq_len`."""
    model = find(size)
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


def estimate_for(cfg, backend: str = "unsloth", *, seq_len: int = 0, batch: int = 0) -> Estimate | None:
    """The estimate for a config's model and settings on a GPU; None where the formula does not apply (tiny, MoE,
    folder)."""
    from kit.training.trainer import optimizer_name

    model = find(cfg.model.name)
    if model is None or model.refused:
        return None
    return estimate(model.size, load_in_4bit=cfg.model.load_in_4bit, lora_r=cfg.lora.r,
                    targets=cfg.lora.target_modules, seq_len=seq_len or cfg.model.max_seq_length,
                    batch=batch or cfg.train.per_device_train_batch_size,
                    gradient_checkpointing=cfg.train.gradient_checkpointing, backend=backend,
                    optim=optimizer_name(cfg, on_gpu=True))


def kv_cache_gb(size: str, tokens: int) -> float:
    """The 16-bit keys and values of `tokens` tokens in every layer of Qwen3-`size`."""
    model = find(size)
    return tokens * 2 * model.layers * model.kv_heads * HEAD_DIM * 2 / GB


def grpo_estimate_for(cfg, backend: str = "unsloth") -> Estimate | None:
    """GRPO's peak for a config: a training pass plus the KV cache of the step's completions; None as for
    estimate_for."""
    g = cfg.grpo
    length = g.max_prompt_length + g.max_completion_length
    est = estimate_for(cfg, backend, seq_len=length, batch=g.per_device_train_batch_size)
    if est is not None:
        est.generation_gb = kv_cache_gb(est.size, g.prompts_per_step * g.num_generations * length)
    return est


def shipped_configs() -> list[tuple[str, object]]:
    """The configs in configs/ as typed trees (values as written, paths not checked), with their file names."""
    from kit.config import Config
    from kit.config.parse import build, read_yaml

    return [(f"configs/{path.name}", build(Config, read_yaml(path), []))
            for path in sorted((PROJECT_ROOT / "configs").glob("*.yaml"))]


def _fits(est: Estimate, gpu_gb: float | None, headroom: float) -> str:
    return "" if not gpu_gb else "  fits" if est.total_gb <= gpu_gb * headroom else "  does not fit"


def plan_report(model: str = "", *, gpu_gb: float | None = None, seq_len: int = 2048, batch: int = 2,
                headroom: float = 0.92) -> str:
    """What `scripts/download.py --plan` prints: the assumptions, the named model's estimate (or why it cannot be
    trained in 4-bit), the largest model for the GPU (or a table of GPUs), and each shipped config's own estimate."""
    known = find(model) if model else None
    batch_note = f", batch {batch} (--batch)" if known and not known.refused else ""
    lines = [f"assumed: sequence length {seq_len} (--seq-len){batch_note}, LoRA r=32 on all 7 projections, "
             "adamw_8bit; a formula, not a measurement (docs/memory.md)"]
    if known and known.refused:
        lines.append(f"{known.name} {known.refused}.")
    elif known:
        lines += [f"{backend:>8}: {estimate(known.size, seq_len=seq_len, batch=batch, backend=backend)}"
                  for backend in ("unsloth", "hf")]
    if gpu_gb:
        pick = recommend(gpu_gb, seq_len=seq_len, headroom=headroom)
        lines.append(f"{gpu_gb:g} GB GPU: " + (f"Qwen3-{pick[0]} at batch {pick[1]} ({pick[2].total_gb:.1f} GB)"
                                                if pick else "no Qwen3 fits; try a shorter --seq-len"))
    else:
        lines.append(plan_table(seq_len=seq_len))
    lines.append("the shipped configs, each at its own length and batch (unsloth):")
    for name, cfg in shipped_configs():
        if est := estimate_for(cfg):
            g, grpo = cfg.grpo, grpo_estimate_for(cfg)
            lines += [f"  {name:<28} {cfg.model.name}, length {cfg.model.max_seq_length}, batch "
                      f"{cfg.train.per_device_train_batch_size}: ~{est.total_gb:.1f} GB{_fits(est, gpu_gb, headroom)}",
                      f"  {'':<28} GRPO: {g.prompts_per_step * g.num_generations} completions of "
                      f"{g.max_prompt_length} + {g.max_completion_length} tokens, pass of "
                      f"{g.per_device_train_batch_size}: ~{grpo.total_gb:.1f} GB{_fits(grpo, gpu_gb, headroom)}"]
    return "\n".join(lines)
