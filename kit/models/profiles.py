"""Every Qwen3 model the kit knows, one profile each: its repos, shape, chat template family, sampling and parser.

    profile = find("Qwen3-14B")        # also "qwen3-14b", "14B", "unsloth/Qwen3-14B-unsloth-bnb-4bit", a folder of it

Names are matched exactly: `find` never takes Qwen3-4B-Instruct-2507 for Qwen3-4B.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

VOCAB = 151936
HEAD_DIM = 128
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # what LoRA targets
VARIANTS = ("dynamic_4bit", "bnb_4bit", "base_16bit")  # Unsloth's dynamic 4-bit, plain bnb 4-bit, Qwen's 16-bit
# Qwen's recommended sampling for each mode (model cards); greedy decoding makes Qwen3 repeat itself.
PRESETS = {True: {"temperature": 0.6, "top_p": 0.95, "top_k": 20}, False: {"temperature": 0.7, "top_p": 0.8,
                                                                            "top_k": 20}}
NO_SWITCH = ("has no thinking switch (Qwen's 2507 releases split the hybrid model into Instruct and Thinking "
             "models), and the kit's recipe trains and checks that switch: train the hybrid {hybrid}, whose "
             "enable_thinking turns thinking on and off")
MOE = ("is a MoE whose experts bitsandbytes does not quantize, so the kit offers no 4-bit LoRA for it. Its 16-bit "
       "weights (61 GB) need an 80 GB GPU; ms-swift trains it there, from ModelScope: `swift sft --model "
       "Qwen/{name} --torch_dtype bfloat16 --target_modules all-linear --dataset <yours>`. On a smaller GPU take the "
       "largest dense model that fits (`qwen3-kit download --plan --gpu-gb <GB>`)")


@dataclass(frozen=True)
class Profile:
    name: str  # Qwen3-14B: the name users type, and the repos' stem
    params_b: float  # billions, as published
    hidden: int = 0
    intermediate: int = 0
    layers: int = 0
    heads: int = 0
    kv_heads: int = 0
    tied: bool = False  # input embeddings and lm_head share one matrix (the small models)
    template: str = "hybrid"  # hybrid (enable_thinking switches) | instruct (never thinks) | thinking (always)
    refused: str = ""  # "<name> {refused}.": why the kit does not train it, and what instead; "" = it does
    presets: dict = field(default_factory=lambda: PRESETS, compare=False)  # sampling per mode (thinking: True)
    reasoning_parser: str = "qwen3"  # vLLM's --reasoning-parser

    @property
    def size(self) -> str:
        return self.name.removeprefix("Qwen3-")

    def repo(self, variant: str) -> str:
        """A variant's repo id, the same on ModelScope and Hugging Face (`Qwen/Qwen3-14B`, ...)."""
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


def _no_switch(name: str, params_b: float, template: str, hybrid: str) -> Profile:
    return Profile(name, params_b, template=template, refused=NO_SWITCH.format(hybrid=hybrid))


PROFILES = {p.name: p for p in [
    Profile("Qwen3-0.6B", 0.6, 1024, 3072, 28, 16, 8, tied=True),
    Profile("Qwen3-1.7B", 1.7, 2048, 6144, 28, 16, 8, tied=True),
    Profile("Qwen3-4B", 4.0, 2560, 9728, 36, 32, 8, tied=True),
    Profile("Qwen3-8B", 8.2, 4096, 12288, 36, 32, 8),
    Profile("Qwen3-14B", 14.8, 5120, 17408, 40, 40, 8),
    Profile("Qwen3-32B", 32.8, 5120, 25600, 64, 64, 8),
    Profile("Qwen3-30B-A3B", 30.5, refused=MOE.format(name="Qwen3-30B-A3B")),
    _no_switch("Qwen3-4B-Instruct-2507", 4.0, "instruct", "Qwen3-4B"),
    _no_switch("Qwen3-4B-Thinking-2507", 4.0, "thinking", "Qwen3-4B"),
    _no_switch("Qwen3-30B-A3B-Instruct-2507", 30.5, "instruct", "Qwen3-30B-A3B"),
    _no_switch("Qwen3-30B-A3B-Thinking-2507", 30.5, "thinking", "Qwen3-30B-A3B"),
]}
TRAINABLE = [p.size for p in PROFILES.values() if not p.refused]  # smallest first


def find(name: str) -> Profile | None:
    """The profile a name refers to, exactly: `Qwen3-14B` (any case), `14B`, one of its repo ids (or
    `unsloth/Qwen3-14B`), or a folder named after one, as the kit's downloads are; None for anything else."""
    key = Path(name).name.replace("--", "/") if "--" in Path(name).name else name
    for profile in PROFILES.values():
        names = {profile.name, profile.size, f"unsloth/{profile.name}", *(profile.repo(v) for v in VARIANTS)}
        if key.lower() in {n.lower() for n in names} or key.lower().removeprefix("qwen3-") == profile.size.lower():
            return profile
    return None


def nearest(name: str) -> list[str]:
    """The profile names closest to a name that matched none, for 'did you mean'."""
    return difflib.get_close_matches(name, list(PROFILES), n=3, cutoff=0.5)


def chat_template() -> str:
    """Qwen3's hybrid-thinking chat template (identical for 0.6B ... 32B), as published by Qwen."""
    return resources.files("kit").joinpath("models/templates/qwen3.jinja").read_text(encoding="utf-8")
