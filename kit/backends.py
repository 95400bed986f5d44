"""Model and tokenizer loading; the training backends are chosen here."""

from __future__ import annotations

from pathlib import Path

from kit.config import Config


def model_dir(cfg: Config) -> Path:
    """The local folder of `cfg.model.name`: the built-in tiny model, a folder, or a hub download."""
    from kit.hub import resolve_model

    return resolve_model(cfg.model)


def load_tokenizer(cfg: Config):
    """The model's own tokenizer (its chat template defines the training format)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir(cfg))
    if not tokenizer.is_fast:
        raise ValueError(f"{model_dir(cfg)}: the kit needs a fast tokenizer (tokenizer.json) to label assistant turns.")
    return tokenizer
