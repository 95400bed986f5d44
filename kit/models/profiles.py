"""The Qwen3 family, described once: each model's published shape, its repos, whether it trains in 4-bit.

    model = find("unsloth/Qwen3-14B-unsloth-bnb-4bit")   # FAMILY["14B"]; also "Qwen3-14B", "qwen3-14b", "14B", a folder
    model.repo("base_16bit"), model.params(), model.linear_shapes()

The hub's catalog and repo names (kit.hub), the memory estimate (kit.models.memory), random-weight models at real shapes
(kit.models.tiny) and the 16-bit base a merge goes into (kit.export.export) all read these records. Shapes are those of
the published config.json of Qwen/Qwen3-<size>; every size shares the vocabulary, head size and chat template.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

VOCAB = 151936
HEAD_DIM = 128
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # what LoRA targets
VARIANTS = ("dynamic_4bit", "bnb_4bit", "base_16bit")  # Unsloth's dynamic 4-bit, plain bnb 4-bit, Qwen's 16-bit


@dataclass(frozen=True)
class Qwen3Model:
    size: str
    params_b: float  # billions, as published
    hidden: int = 0
    intermediate: int = 0
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    tied: bool = False  # input embeddings and lm_head share one matrix (the small models)
    trainable_4bit: bool = True  # Unsloth dynamic 4-bit LoRA is supported
    note: str = ""

    @property
    def name(self) -> str:
        return f"Qwen3-{self.size}"

    def repo(self, variant: str) -> str:
        """A variant's repo id: `unsloth/Qwen3-14B-unsloth-bnb-4bit`, `unsloth/Qwen3-14B-bnb-4bit`, `Qwen/Qwen3-14B`."""
        return {"dynamic_4bit": f"unsloth/{self.name}-unsloth-bnb-4bit", "bnb_4bit": f"unsloth/{self.name}-bnb-4bit",
                "base_16bit": f"Qwen/{self.name}"}[variant]

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each projection of one decoder layer."""
        q, kv = self.heads * HEAD_DIM, self.kv_heads * HEAD_DIM
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv), "v_proj": (self.hidden, kv),
                "o_proj": (q, self.hidden), "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate), "down_proj": (self.intermediate, self.hidden)}

    def linear_params(self) -> int:
        return self.layers * sum(i * o for i, o in self.linear_shapes().values())

    def embedding_params(self) -> int:
        """The input embeddings and the lm_head (one matrix when tied)."""
        return VOCAB * self.hidden * (1 if self.tied else 2)

    def params(self) -> int:
        """Parameters, norms aside: 8B -> 8.19e9, as published."""
        return self.linear_params() + self.embedding_params()


FAMILY = {m.size: m for m in [
    Qwen3Model("0.6B", 0.6, 1024, 3072, 28, 16, 8, tied=True),
    Qwen3Model("1.7B", 1.7, 2048, 6144, 28, 16, 8, tied=True),
    Qwen3Model("4B", 4.0, 2560, 9728, 36, 32, 8, tied=True),
    Qwen3Model("8B", 8.2, 4096, 12288, 36, 32, 8),
    Qwen3Model("14B", 14.8, 5120, 17408, 40, 40, 8),
    Qwen3Model("32B", 32.8, 5120, 25600, 64, 64, 8),
    Qwen3Model("30B-A3B", 30.5, trainable_4bit=False,
               note="a MoE whose experts bitsandbytes does not quantize, so the kit offers no 4-bit LoRA for it. Its "
                    "16-bit weights (61 GB) need an 80 GB GPU; ms-swift trains it there, from ModelScope: `swift sft "
                    "--model Qwen/Qwen3-30B-A3B --torch_dtype bfloat16 --target_modules all-linear --dataset <yours>`. "
                    "On a smaller GPU take the largest dense model that fits (`python scripts/download.py --plan "
                    "--gpu-gb <GB>`)"),
]}
TRAINABLE = [size for size, model in FAMILY.items() if model.trainable_4bit]  # smallest first


def find(name: str) -> Qwen3Model | None:
    """The family member a name refers to: `Qwen3-14B`, `qwen3-14b`, `14B`, a repo id or a folder named after one."""
    lowered = name.lower()
    if lowered in {size.lower() for size in FAMILY}:
        return next(m for s, m in FAMILY.items() if s.lower() == lowered)
    for size in sorted(FAMILY, key=len, reverse=True):  # 30B-A3B before 3... and 0.6B before 6B
        if f"qwen3-{size.lower()}" in lowered:
            return FAMILY[size]
    return None


def chat_template() -> str:
    """Qwen3's hybrid-thinking chat template (identical for 0.6B ... 32B), as published by Qwen."""
    return resources.files("kit").joinpath("models/templates/qwen3.jinja").read_text(encoding="utf-8")
