"""The tiny default: a small Qwen3 that knows a toy world, with a tokenizer of Qwen3's make; no download, any machine.

    folder = build_tiny_model()   # the built-in tiny default: pretrained once on the toy world (minutes), cached

It is the real `Qwen3ForCausalLM` architecture with a byte-level BPE tokenizer trained on the toy world
(kit.models.toy): Qwen3's pre-tokenizer, its special tokens (`<|im_start|>`, `<|im_end|>`, `<think>`, ...) and Qwen3's
own chat template, so everything rendered for it is rendered exactly as for a real Qwen3. The tiny default is
pretrained on the toy world's base half, so fine-tuning on `data/` (its other half) teaches it something the kit's
measurements can see. tests/shapes.py builds random-weight models of the published shapes with the same tokenizer.
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


def tiny_config(tokenizer, **shape):
    """The `Qwen3Config` of a model for the tiny tokenizer: the tiny default's shape, or another through `shape`."""
    return qwen3_config(**{"vocab_size": len(tokenizer), **shape}, bos_token_id=None,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def save_beside_weights(folder: Path, config, tokenizer) -> None:
    """A model folder's files but its weights: config.json, generation_config.json (Qwen3's sampling preset, both of
    its end tokens) and the tokenizer."""
    from transformers import GenerationConfig

    config.save_pretrained(folder)
    GenerationConfig(
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id, do_sample=True, temperature=0.6, top_p=0.95, top_k=20,
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _random_tiny(folder: Path, seed: int) -> Path:
    """The tiny default before pretraining: Qwen3's initialisation (normal(0, initializer_range), norms at 1), each
    tensor drawn from its own seeded generator, so the same seed gives the same weights on any machine."""
    import torch
    from safetensors.torch import save_file
    from transformers import Qwen3ForCausalLM

    tokenizer = build_tiny_tokenizer()
    model = Qwen3ForCausalLM(config := tiny_config(tokenizer))
    tied = set(model._tied_weights_keys or {}) if config.tie_word_embeddings else set()
    tensors = {name: tensor for name, tensor in model.state_dict().items() if name not in tied}
    with torch.no_grad():
        for i, (name, tensor) in enumerate(tensors.items()):
            if name.endswith("norm.weight"):
                tensor.fill_(1)
            else:
                tensor.normal_(0, config.initializer_range,
                               generator=torch.Generator().manual_seed((seed * 100_003 + i) * 65_537))
    folder.mkdir()
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    save_beside_weights(folder, config, tokenizer)
    return folder


PRETRAINING = {"batch": 16, "lr": 5e-3, "cooldown": 200, "max_steps": 2000}


def build_tiny_model(folder: str | Path | None = None, *, seed: int = 0) -> Path:
    """The built-in tiny default, cached under the kit's cache root: a tiny random Qwen3
    pretrained once, in a few minutes on a CPU, on the base half of the toy world (kit.models.toy). It knows that world
    as a real base knows language (it works sums, and chats with thinking on and off) but not the task
    SFT teaches: a problem in the chat template answered with its steps in a think block and a boxed result.
    `pretraining.json` in the folder says how long it trained and how many sums it then worked right."""
    from kit.files import atomic_folder

    folder = Path(folder or cache_root() / "models" / f"tiny-qwen3-v{TINY_VERSION}")
    if not (folder / "config.json").is_file():
        print(f"pretraining the tiny default on the toy world, once (a few minutes on 2 cores) -> {folder}")
        with atomic_folder(folder) as tmp:
            _pretrain(_random_tiny(tmp / "random", seed), tmp, seed)
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
