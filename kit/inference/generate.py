"""Chat with a base model, a base plus adapter, or a merged export, with Qwen3's thinking switched on or off.

    model, tokenizer = load_for_inference("runs/smoke/adapter")         # base + adapter (base read from it)
    replies = generate(model, tokenizer, [[{"role": "user", "content": "2+2?"}]], thinking=False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kit.errors import KitError
from kit.models.profiles import PRESETS
from kit.paths import shown


@dataclass
class Reply:
    text: str  # everything generated after the prompt, special tokens removed
    reasoning: str  # inside <think>...</think> ("" when none)
    answer: str  # after </think>, or all of it when no think block was opened
    closed: bool  # the think block, if opened, was closed


def split_reasoning(text: str) -> Reply:
    """Split generated text into reasoning and answer (thinking off: all answer); repeated tags inside the reasoning
    and stray `</think>` after it are dropped, as vLLM's qwen3 reasoning parser drops them."""
    body = text.lstrip()
    if "</think>" in body:
        reasoning, answer = body.split("</think>", 1)
        return Reply(text, reasoning.replace("<think>", "").strip(), answer.replace("</think>", "").strip(), True)
    if body.startswith("<think>"):
        return Reply(text, body.replace("<think>", "").strip(), "", closed=False)
    return Reply(text, "", body.strip(), closed=True)


def _checked(path: Path) -> tuple[Path, bool]:
    """`path` and whether it is an adapter; a folder that is neither a model nor an adapter, in one sentence."""
    is_adapter = (path / "adapter_config.json").is_file()
    if is_adapter:
        from kit.training.runs import verify_adapter

        verify_adapter(path)
    if is_adapter or (path / "config.json").is_file():
        return path, is_adapter
    if not path.exists():
        raise KitError(f"{shown(path)} does not exist; give a model, adapter or export folder (e.g. runs/smoke/adapter)"
                       ", or a run with --run.")
    raise KitError(f"{shown(path)} is not a model, adapter or export folder: it holds neither config.json nor "
                   "adapter_config.json.")


def load_for_inference(path: str | Path, *, base: str | Path | None = None, backend: str = "auto",
                       load_in_4bit: bool = True, dtype: str = "auto"):
    """(model in eval mode, tokenizer) from a model folder (base or merged) or an adapter folder, whose base defaults
    to the one it records. `load_in_4bit`: unsloth's base in 4-bit, as trained; `dtype`: auto | bf16 | fp32."""
    import torch

    from kit.training.backends import activate_backend

    path, is_adapter = _checked(Path(path))
    if not base and is_adapter:  # the base it records, read as JSON: peft would import transformers before unsloth
        base = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))["base_model_name_or_path"]
    base_path = Path(base) if base else path
    if not (base_path / "config.json").is_file():
        raise KitError(f"the base model {shown(base_path)} of {shown(path)} is not on this machine; pass the base "
                       "model's folder (--base, or base= in Python).")
    backend = activate_backend(backend)  # unsloth before transformers
    from transformers import AutoTokenizer

    torch_dtype = {"auto": None, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    model = _load_base(backend, base_path, load_in_4bit, torch_dtype)
    if is_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(path))
    if backend == "unsloth":
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    tokenizer = AutoTokenizer.from_pretrained(path if (path / "tokenizer_config.json").is_file() else base_path)
    return model.eval(), tokenizer


def merge_for_decoding(model) -> None:
    """Merge a PeftModel's adapter into its weights: unmerged, every projection adds two matmuls (+26-57 % a decoding
    step on a CPU). Not into 4-bit weights, which merging would round; `disable_adapter()` unmerges it."""
    if getattr(model.config, "quantization_config", None) is None and not any(
            getattr(module, "merged", False) for module in model.modules()):
        model.merge_adapter()


def _load_base(backend: str, folder: Path, load_in_4bit: bool, dtype):
    """The base weights: through Unsloth (4-bit as trained, by default), or transformers in 16/32-bit."""
    import torch

    if backend == "unsloth":
        from unsloth import FastLanguageModel

        return FastLanguageModel.from_pretrained(str(folder), load_in_4bit=load_in_4bit, dtype=dtype)[0]
    from transformers import AutoModelForCausalLM

    on_gpu = torch.cuda.is_available()
    return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype or (torch.bfloat16 if on_gpu else torch.float32),
                                                device_map={"": 0} if on_gpu else None)


def generate(model, tokenizer, conversations: list[list[dict]], *, thinking: bool = True,
             max_new_tokens: int = 1024, stream: bool = False, seed: int | None = None,
             **sampling) -> list[Reply]:
    """Reply to each conversation in one padded batch; `sampling` overrides Qwen's preset for the mode, `stream=True`
    prints a single conversation's tokens as they come."""
    import torch
    from transformers import TextStreamer, set_seed

    if seed is not None:
        set_seed(seed)
    prompts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
               for c in conversations]
    tokenizer.padding_side = "left"  # decoder-only generation continues from the right end of each row
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    options = {"do_sample": True, **PRESETS[thinking], **sampling}
    if not options["do_sample"]:
        options = {k: v for k, v in options.items() if k not in ("temperature", "top_p", "top_k")}
    # <think> and </think> are not special tokens in Qwen3's tokenizer, so they stay; <|im_end|> goes.
    streamer = (TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
                if stream and len(prompts) == 1 else None)
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, streamer=streamer,
                             pad_token_id=tokenizer.pad_token_id, **options)
    new = out[:, inputs["input_ids"].shape[1]:]
    return [split_reasoning(tokenizer.decode(row, skip_special_tokens=True)) for row in new]


def generate_batched(model, tokenizer, conversations: list[list[dict]], *, batch_size: int = 8,
                     progress: str | None = None, **kwargs) -> list[Reply]:
    """`generate`, `batch_size` at a time, longest prompt first (little padding; a batch too large fails at once),
    the replies in the order given; `progress` names a progress bar."""
    from tqdm.auto import tqdm

    order = sorted(range(len(conversations)), key=lambda i: -sum(len(m["content"]) for m in conversations[i]))
    replies: list[Reply | None] = [None] * len(conversations)
    with tqdm(total=len(order), desc=progress, unit=" replies", disable=progress is None) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, reply in zip(chunk, generate(model, tokenizer, [conversations[i] for i in chunk], **kwargs),
                                strict=True):
                replies[i] = reply
            bar.update(len(chunk))
    return replies


def chat(model, tokenizer, prompt: str, *, thinking: bool = True, system: str | None = None, **kwargs) -> Reply:
    """One question, one reply: `chat(model, tok, "What is 7*8?", thinking=False).answer`."""
    conversation = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return generate(model, tokenizer, [conversation], thinking=thinking, **kwargs)[0]


def side_by_side(models: dict, prompts: list[str], *, max_new_tokens: int = 256, seed: int = 0):
    """A DataFrame of each model's reply to each prompt, thinking on and off; `models`: name -> (model, tokenizer)."""
    import pandas as pd

    rows = []
    for prompt in prompts:
        for thinking in (True, False):
            row = {"prompt": prompt, "thinking": "on" if thinking else "off"}
            for name, (model, tokenizer) in models.items():
                reply = chat(model, tokenizer, prompt, thinking=thinking, max_new_tokens=max_new_tokens, seed=seed)
                row[f"{name} reasoning"] = reply.reasoning
                row[f"{name} answer"] = reply.answer
            rows.append(row)
    return pd.DataFrame(rows)
