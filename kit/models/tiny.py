"""The tiny default: a random-weight Qwen3 with a small tokenizer of Qwen3's make; no download, any machine.

    folder = build_tiny_model()                       # the built-in tiny default, cached; trains on a CPU in a minute

It is the real `Qwen3ForCausalLM` architecture with a byte-level BPE tokenizer trained on `data/`: Qwen3's
pre-tokenizer, its special tokens (`<|im_start|>`, `<|im_end|>`, `<think>`, ...) and Qwen3's own chat template, so
everything rendered for it is rendered exactly as for a real Qwen3. `build_random_qwen3` writes any other shape the
same way (tests/shapes.py builds the published ones for the GPU check and the merge tests).
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.models.profiles import VOCAB, chat_template
from kit.paths import DATA_DIR, cache_root

TINY_VERSION = 4  # bump to rebuild cached tiny models after a change here
SPECIAL_TOKENS = [  # Qwen3's added tokens, in Qwen3's order
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
]
CONTROL_TOKENS = SPECIAL_TOKENS[:14]  # the ones Qwen3 marks special (skipped by decode(skip_special_tokens=True))
QWEN3_PRETOKENIZE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                     r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _training_text() -> list[str]:
    """Text from the sample data, so the tiny tokenizer's merges look like the data it will see."""
    import pyarrow.parquet as pq

    texts = []
    for path in sorted(DATA_DIR.glob("*.parquet")):
        table = pq.read_table(path)
        for column in ("problem", "generated_solution"):
            if column in table.column_names:
                texts += table.column(column).to_pylist()
    for path in sorted(DATA_DIR.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            texts += _strings(json.loads(line))
    return texts


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def build_tiny_tokenizer(vocab_size: int = 2048):
    """A byte-level BPE tokenizer with Qwen3's pre-tokenizer, special tokens and chat template."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN3_PRETOKENIZE), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_training_text(), trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in CONTROL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in SPECIAL_TOKENS[14:]])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        additional_special_tokens=CONTROL_TOKENS[1:], chat_template=chat_template(),
        model_max_length=32768, clean_up_tokenization_spaces=False,
    )


def qwen3_config(vocab_size: int = VOCAB, **overrides):
    """The tiny `Qwen3Config` (~3.6M parameters), or any other shape through `overrides`."""
    from transformers import Qwen3Config

    values = dict(architectures=["Qwen3ForCausalLM"],  # as published: vLLM picks the model class from it
                  vocab_size=vocab_size, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True,
                  max_position_embeddings=4096, rope_theta=1000000.0, rms_norm_eps=1e-6, dtype="float32")
    return Qwen3Config(**values | overrides)


def build_random_qwen3(folder: str | Path, *, seed: int = 0, max_shard_size: str = "5GB", **shape) -> Path:
    """Build (once) a random-weight Qwen3 with the tiny tokenizer into `folder`, and return it.

    Without `shape` it is the tiny default (fp32, its vocabulary the tokenizer's); `shape` overrides the config (a
    published shape in bf16 with Qwen3's full vocabulary: tests/shapes.py), where speed and memory matter and the
    weights' values do not. The architecture is laid out on the meta device (names and shapes, no memory) and each
    tensor is drawn and written on its own, so even 32B builds on the CPU in about one tensor's memory and never
    touches a GPU. The folder appears only when complete, so a build that was killed is never reused.
    """
    from transformers import GenerationConfig

    from kit.files import atomic_folder

    folder = Path(folder)
    if (folder / "config.json").is_file():
        return folder
    with atomic_folder(folder) as tmp:
        tokenizer = build_tiny_tokenizer()
        config = qwen3_config(**{"vocab_size": len(tokenizer), **shape}, bos_token_id=None,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        _write_random_weights(tmp, config, config.dtype, seed, max_shard_size)
        config.save_pretrained(tmp)
        GenerationConfig(
            eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")],
            pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=0.6, top_p=0.95, top_k=20,
        ).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return folder


def _write_random_weights(folder: Path, config, dtype, seed: int, max_shard_size: str) -> None:
    """Qwen3's own initialisation (normal(0, initializer_range), norms at 1), drawn tensor by tensor into shards
    laid out as `save_pretrained` lays them out (huggingface_hub's splitter), tied embeddings stored once."""
    import torch
    from huggingface_hub import split_torch_state_dict_into_shards
    from transformers import Qwen3ForCausalLM

    from kit.export.shards import write_file, write_index

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


def build_tiny_model(folder: str | Path | None = None, *, seed: int = 0) -> Path:
    """The built-in tiny default, cached under the kit's cache root."""
    return build_random_qwen3(folder or cache_root() / "models" / f"tiny-qwen3-v{TINY_VERSION}", seed=seed)
