"""Guards against the silent failures of fine-tuning, each a named stop (GuardError) or warning, each seen in the field
running unnoticed: `label-coverage`, `pad-token`, `finite-loss`, `same-template`, `packing`, `rollouts-with-adapter`.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

from kit.errors import KitError

MIN_TRAINED_SHARE = 0.02  # a source training less of its tokens has lost its labels to a masking mistake
PACKING_TOLERANCE = 0.05  # packed vs alone, of the largest logit: bf16 noise stays near 0.01, another row's context not
TEMPLATE_PROBE = [  # a conversation in the shapes training renders: system, an earlier turn, a final reasoning answer
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "<think>\nAdd again.\n</think>\n\n6"},
]


class GuardError(KitError, RuntimeError):
    """A guard's stop: `guard <name>: what it saw; what to do`."""


def label_coverage(report: dict) -> list[str]:
    """guard `label-coverage`, on the data report: a source training under MIN_TRAINED_SHARE of its tokens, as a
    warning (one that keeps no row at all the data stage refuses)."""
    warnings = []
    for name, s in report["sources"].items():
        if s["tokens_used"] and s["trained_tokens_used"] < MIN_TRAINED_SHARE * s["tokens_used"]:
            warnings.append(f"guard label-coverage: source '{name}' trains {s['trained_tokens_used']} of its "
                            f"{s['tokens_used']} tokens, under {MIN_TRAINED_SHARE:.0%}: are its answers labelled?")
    return warnings


def pad_token(model, tokenizer) -> None:
    """guard `pad-token`: the pad id lies inside the embeddings and a right-padded batch gives a finite loss."""
    import torch

    pad, rows = tokenizer.pad_token_id, model.get_input_embeddings().num_embeddings
    if pad is None or not 0 <= pad < rows:
        raise GuardError(f"guard pad-token: the tokenizer's pad token id is {pad}, not one of the model's {rows} "
                         "embeddings; use the model's own tokenizer (Qwen3's pads with <|endoftext|>).")
    batch = tokenizer(["The pad guard checks this row.", "Short."], padding=True, padding_side="right",
                      return_tensors="pt").to(model.device)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    training = model.training
    model.eval()  # no dropout: the random state training draws from is left alone
    with torch.no_grad():
        loss = float(model(**batch, labels=labels).loss)
    model.train(training)
    if not math.isfinite(loss):
        raise GuardError(f"guard pad-token: a padded batch gives the loss {loss} (pad token {pad}, "
                         f"{tokenizer.pad_token!r}): its embedding or the attention mask yields NaN; use the model's "
                         "own tokenizer and weights.")


def finite_loss():
    """guard `finite-loss`: a callback stopping the run at the first NaN or infinite training or eval loss."""
    from transformers import TrainerCallback

    class FiniteLoss(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            bad = {k: v for k, v in (logs or {}).items() if k in ("loss", "eval_loss") and not math.isfinite(v)}
            if bad:
                raise GuardError(f"guard finite-loss: at step {state.global_step} {bad}; nothing after it is worth "
                                 "keeping. Lower train.learning_rate, or resume from the last checkpoint.")

    return FiniteLoss()


def same_template(reference, other, what: str) -> None:
    """guard `same-template`: `other` (an exported tokenizer) renders TEMPLATE_PROBE byte for byte as `reference`
    does, with thinking on and off, as vLLM renders it."""
    renders = [(TEMPLATE_PROBE, {}), *((TEMPLATE_PROBE[:-1], {"add_generation_prompt": True, "enable_thinking": mode})
                                      for mode in (True, False))]
    for conversation, kwargs in renders:
        expected, got = (t.apply_chat_template(conversation, tokenize=False, **kwargs) for t in (reference, other))
        if expected != got:
            at = next((i for i, (a, b) in enumerate(zip(expected, got, strict=False)) if a != b),
                      min(len(expected), len(got)))
            raise GuardError(f"guard same-template: {what} renders a conversation ({kwargs or 'training text'}) "
                             f"unlike the template training used, from character {at}: {got[at:at + 40]!r} instead of "
                             f"{expected[at:at + 40]!r}; nothing was kept.")


def packing_leak(model, batch: dict) -> float:
    """How far a packed `batch`'s second row moves its logits when run alone, as a share of its largest logit."""
    import torch

    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    first, end = starts[1], starts[2]
    was = model.training
    model.eval()
    with torch.no_grad():
        packed = model(**batch).logits[0, first:end].float()
        alone = model(input_ids=batch["input_ids"][:, first:end],
                      position_ids=batch["position_ids"][:, first:end]).logits[0].float()
    model.train(was)
    return float((packed - alone).abs().max() / alone.abs().max())


def packing(trainer) -> None:
    """guard `packing`: in the first packed sequence of two rows or more, the second row's logits are those it has
    alone (padding-free packing relies on the attention reading position_ids)."""
    rows = trainer.train_dataset
    index = next((i for i, n in enumerate(rows.select(range(min(len(rows), 256)))["seq_lengths"]) if len(n) > 1), None)
    if index is None:
        return
    batch = {k: v.to(trainer.model.device) for k, v in trainer.data_collator([rows[index]]).items() if k != "labels"}
    leak = packing_leak(trainer.model, batch)
    if leak > PACKING_TOLERANCE:
        raise GuardError(f"guard packing: a packed row's logits move by {leak:.1%} of their largest when run alone, "
                         "so packed rows attend to each other with this attention implementation; set "
                         "train.packing=false.")


def rollout_gap(model, prompt_ids: list[list[int]], completion_ids: list[list[int]], rows: int = 4) -> float:
    """Mean log-probability per completion token under the policy minus under the base, over the first `rows`
    rollouts: > 0 (the policy's KL from the base) when the policy sampled them, < 0 when the base did."""
    import torch

    gaps = []
    with torch.no_grad():
        for prompt, completion in list(zip(prompt_ids, completion_ids, strict=True))[:rows]:
            if not completion:
                continue
            ids = torch.tensor([prompt + completion], device=model.device)
            logps = []
            for adapter in (nullcontext(), model.disable_adapter()):
                with adapter:
                    logits = model(input_ids=ids, logits_to_keep=len(completion) + 1).logits[0, :-1].float()
                logps.append(logits.log_softmax(-1).gather(1, ids[0, -len(completion):, None]).sum())
            gaps.append((float(logps[0] - logps[1]), len(completion)))
    return sum(g for g, _ in gaps) / max(1, sum(n for _, n in gaps))


def rollouts_with_adapter(gap: float, step: int) -> str:
    """guard `rollouts-with-adapter`: the warning for `rollout_gap` at `step`, or "" where the rollouts look right."""
    if gap >= 0:
        return ""
    return (f"guard rollouts-with-adapter: the rollouts at step {step} are {-gap:.3f} nats a token likelier under the "
            "base than under the adapter being trained, as if sampled without it (the generation engine ignoring "
            "the LoRA): GRPO is then reinforcing the base's completions. Check grpo.generation.")
