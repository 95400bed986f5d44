"""The tiny default: a small Qwen3 that knows a toy world, with a tokenizer of Qwen3's make; no download, any machine.

    folder = build_tiny_model()   # the built-in tiny default: pretrained once on the toy world (minutes), cached

It is the real `Qwen3ForCausalLM` architecture with a byte-level BPE tokenizer trained on the toy world
(kit.models.toy): Qwen3's pre-tokenizer, its special tokens (`<|im_start|>`, `<|im_end|>`, `<think>`, ...) and Qwen3's
own chat template, so everything rendered for it is rendered exactly as for a real Qwen3. The tiny default is
pretrained on the toy world's base half, so fine-tuning on `data/` (its other half) teaches it something the kit's
measurements can see. `build_random_qwen3` writes a random-weight model of any shape the same way (tests/shapes.py
builds the published ones for the GPU check and the merge tests).
"""

from __future__ import annotations

import json
from pathlib import Path

from kit.models.profiles import VOCAB, chat_template
from kit.paths import cache_root

TINY_VERSION = 5  # bump to rebuild cached tiny models after a change here
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
    """Text of the toy world (kit.models.toy) the tiny model reads, so the tokenizer's merges fit it. Generated, not
    read from `data/`, so the sample data can change without changing the tokenizer (and the pretrained base)."""
    import random

    from kit.models.toy import base_document

    rng = random.Random(0)
    return [base_document(rng, i, lambda messages, thinking: "\n".join(m["content"] for m in messages))
            for i in range(4000)]


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
    """The tiny `Qwen3Config` (~0.8M parameters), or any other shape through `overrides`."""
    from transformers import Qwen3Config

    values = dict(architectures=["Qwen3ForCausalLM"],  # as published: vLLM picks the model class from it
                  vocab_size=vocab_size, hidden_size=128, intermediate_size=384, num_hidden_layers=3,
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


PRETRAINING = {"batch": 16, "lr": 5e-3, "cooldown": 200, "max_steps": 2000}


def build_tiny_model(folder: str | Path | None = None, *, seed: int = 0) -> Path:
    """The built-in tiny default, cached under the kit's cache root: a tiny random Qwen3 (`build_random_qwen3`)
    pretrained once, in a few minutes on a CPU, on the base half of the toy world (kit.models.toy). It knows that world
    as a real base knows language (it works sums, and chats with thinking on and off) but not the task
    SFT teaches: a problem in the chat template answered with its steps in a think block and a boxed result.
    `pretraining.json` in the folder says how long it trained and how many sums it then worked right."""
    from kit.files import atomic_folder

    folder = Path(folder or cache_root() / "models" / f"tiny-qwen3-v{TINY_VERSION}")
    if not (folder / "config.json").is_file():
        print(f"pretraining the tiny default on the toy world, once (a few minutes on 2 cores) -> {folder}")
        with atomic_folder(folder) as tmp:
            _pretrain(build_random_qwen3(tmp / "random", seed=seed), tmp, seed)
    return folder


def _pretrain(random_dir: Path, out: Path, seed: int) -> None:
    """Next-token training on the toy world's base documents, a batch padded to its longest, written to `out` as a
    model of its own. Copying digits from the question comes abruptly, after a number of steps that varies with the
    initialisation (~500-800), so the loop checks every 100 steps and, once half of the held-out sums come out right,
    decays the learning rate to 0 over `cooldown` steps. Two threads on any machine, so floating-point reductions run
    in the same order and a 2-core CI machine learns the base a developer's did. A plain loop: at this size the
    Trainer's overhead would be most of the time."""
    import random
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kit.models.toy import base_document

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    tokenizer = AutoTokenizer.from_pretrained(random_dir)
    model = AutoModelForCausalLM.from_pretrained(random_dir)
    p, pad = PRETRAINING, tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=p["lr"], betas=(0.9, 0.98), weight_decay=0.0)
    rng, step, cooling_from = random.Random(seed), 0, None

    def render(messages, thinking):
        return tokenizer.apply_chat_template(messages, tokenize=False, enable_thinking=thinking)

    while cooling_from is None or step < cooling_from + p["cooldown"]:
        scale = min(1, (step + 1) / 20) if cooling_from is None else 1 - (step - cooling_from) / p["cooldown"]
        optimizer.param_groups[0]["lr"] = p["lr"] * scale
        ids = [tokenizer(base_document(rng, step * p["batch"] + i, render))["input_ids"] for i in range(p["batch"])]
        longest = max(map(len, ids))
        inputs = torch.tensor([x + [pad] * (longest - len(x)) for x in ids])
        labels = torch.tensor([x + [-100] * (longest - len(x)) for x in ids])
        model(input_ids=inputs, labels=labels).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        if cooling_from is None and step % 100 == 0 and (step >= p["max_steps"] or _sums_right(model, tokenizer) >= .5):
            cooling_from = step
    torch.set_num_threads(threads)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    shutil.copy(random_dir / "generation_config.json", out)
    shutil.rmtree(random_dir)
    (out / "pretraining.json").write_text(json.dumps({"steps": step, "sums_right": _sums_right(model, tokenizer)}))


def _sums_right(model, tokenizer, n: int = 40) -> float:
    """The share of `n` sums of the toy world's data half (never trained on) whose steps the model writes right,
    greedily, in a think block: where fine-tuning will ask for them."""
    import random

    import torch
    from transformers import GenerationConfig

    from kit.models.toy import PHRASES, pair, sum_steps

    rng = random.Random(0)
    pairs = [pair(rng, "data") for _ in range(n)]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": rng.choice(PHRASES).format(a=a, b=b)}],
                                             add_generation_prompt=True)["input_ids"] for a, b in pairs]
    longest = max(map(len, prompts))
    inputs = torch.tensor([[tokenizer.pad_token_id] * (longest - len(x)) + x for x in prompts])  # padded on the left
    model.eval()
    with torch.no_grad():
        out = model.generate(inputs, attention_mask=(inputs != tokenizer.pad_token_id).long(),
                             generation_config=GenerationConfig(max_new_tokens=64, do_sample=False,
                                                                pad_token_id=tokenizer.pad_token_id))
    model.train()
    texts = tokenizer.batch_decode(out[:, longest:])
    return sum(t.startswith(f"<think>\n{sum_steps(a, b)}") for (a, b), t in zip(pairs, texts, strict=True)) / n
