"""kit.training.guards: each guard passes what is right and stops (or warns on) its failure, made on purpose."""

import json
import math

import pytest
import torch

from kit.training import guards
from kit.training.guards import GuardError


def test_a_source_whose_every_row_lost_its_labels_is_refused_and_a_thinly_labelled_one_is_said(
        smoke_cfg, tiny_tokenizer, tmp_path):
    """A source whose answers all fall past the truncation keeps no row: the data stage names it with the fix (the
    mix would train without it, silently). The smoke mix passes the guard; a source labelled thinly is said."""
    from kit.config.schema import SourceConfig
    from kit.data import prepare_data
    from kit.data.formats import DataError

    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"messages": [{"role": "user", "content": "word " * 700},
                                                     {"role": "assistant", "content": "ok"}]}) + "\n"
                            for _ in range(8)))
    cfg = smoke_cfg("data.overlong=truncate")
    report = prepare_data(cfg, tiny_tokenizer, progress=False).report
    assert guards.label_coverage(report) == []
    cfg.data.sources = [SourceConfig(path=str(long), format="messages", role="chat")]
    with pytest.raises(DataError, match=r"source 'long' \(.*\) has no usable row: of the 8 read, dropped 8 "
                                        r"nothing_to_train_after_truncation; a higher model.max_seq_length keeps the "
                                        r"answers truncation cut off.$"):
        prepare_data(cfg, tiny_tokenizer, progress=False)
    report["sources"]["chat"]["trained_tokens_used"] = report["sources"]["chat"]["tokens_used"] // 100
    chat = report["sources"]["chat"]
    assert guards.label_coverage(report) == [
        f"guard label-coverage: source 'chat' trains {chat['trained_tokens_used']} of its {chat['tokens_used']} "
        "tokens, under 2%: are its answers labelled?"]


@pytest.fixture
def tiny_model(tiny_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_dir)


def test_pad_token_stops_a_pad_id_past_the_embeddings_and_a_nan_embedding(tiny_model, tiny_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    guards.pad_token(tiny_model, tokenizer)
    with torch.no_grad():
        tiny_model.get_input_embeddings().weight[tokenizer.pad_token_id] = float("nan")
    with pytest.raises(GuardError, match="guard pad-token: a padded batch gives the loss nan"):
        guards.pad_token(tiny_model, tokenizer)
    tokenizer.pad_token_id = tiny_model.get_input_embeddings().num_embeddings
    with pytest.raises(GuardError, match="guard pad-token: the tokenizer's pad token id is"):
        guards.pad_token(tiny_model, tokenizer)


def test_a_nan_loss_stops_training_and_is_logged_as_nan(smoke_cfg, tmp_path):
    from transformers import TrainerState

    from kit.training.trainer import sft_config

    assert sft_config(smoke_cfg(), tmp_path).logging_nan_inf_filter is False  # else a NaN step is logged as 0.0
    state = TrainerState(global_step=7)
    guards.finite_loss().on_log(None, state, None, logs={"loss": 2.5, "eval_loss": 3.0})
    with pytest.raises(GuardError, match=r"guard finite-loss: at step 7 \{'loss': nan\}"):
        guards.finite_loss().on_log(None, state, None, logs={"loss": math.nan, "learning_rate": 1e-4})


def test_same_template_passes_the_served_default_and_stops_a_template_that_drops_the_empty_think(qwen3_tokenizer):
    from copy import deepcopy

    from kit.export.export import with_thinking_default

    served = deepcopy(qwen3_tokenizer)
    served.chat_template = with_thinking_default(qwen3_tokenizer.chat_template, False)  # export.thinking_default
    guards.same_template(qwen3_tokenizer, served, "the export")  # explicit enable_thinking renders the same
    served.chat_template = qwen3_tokenizer.chat_template.replace("{{- '<think>\\n\\n</think>\\n\\n' }}", "")
    with pytest.raises(GuardError, match=r"guard same-template: the export renders a conversation \(\{'add_generation"
                                         r"_prompt': True, 'enable_thinking': False\}\) unlike the template training"):
        guards.same_template(qwen3_tokenizer, served, "the export")


def test_packed_rows_never_see_each_other(smoke_cfg, tiny_dir, tmp_path):
    """TRL's padding-free packing with the kit's data: the second row of a packed sequence gives the logits it gives
    alone (transformers reads the row boundaries off position_ids), and its first label is masked, so no row predicts
    another's token. With an attention mask over the whole pack (an attention that ignores position_ids) it would
    see the row before it, and the guard stops."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.data import prepare_data
    from kit.data.template import IGNORE
    from kit.training.backends import load_tokenizer
    from kit.training.trainer import build_trainer

    cfg = smoke_cfg("train.packing=true")
    tokenizer = load_tokenizer(cfg)
    rows = prepare_data(cfg, tokenizer, progress=False).train.remove_columns("source")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                           LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    trainer = build_trainer(cfg, model, tokenizer, rows, None, tmp_path, progress=False)
    guards.packing(trainer)
    packed = next(r for r in trainer.train_dataset if len(r["seq_lengths"]) > 1)
    batch = trainer.data_collator([packed])
    starts = (batch["position_ids"][0] == 0).nonzero().flatten()
    assert len(starts) == len(packed["seq_lengths"]) and (batch["labels"][0, starts] == IGNORE).all()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    assert guards.packing_leak(model, inputs) < 1e-5
    assert guards.packing_leak(model, inputs | {"attention_mask": torch.ones_like(inputs["input_ids"])}) > 0.1


def test_rollouts_sampled_without_the_adapter_are_told_apart(smoke_run):
    """The same prompts sampled from the SFT adapter and from its base (the adapter disabled, as an engine ignoring
    the LoRA would): the policy's rollouts are likelier under it than under the base, the base's the other way."""
    from kit.inference.generate import load_for_inference

    model, tokenizer = load_for_inference(smoke_run / "adapter", backend="hf")
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in ("Solve 2x + 3 = 7.", "What is 15% of 80?", "Factor x^2 - 9.", "Compute 7 * 8.")]
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    gaps = {}
    for name, adapter in (("policy", torch.no_grad()), ("base", model.disable_adapter())):
        torch.manual_seed(0)
        with adapter, torch.no_grad():
            completions = [model.generate(torch.tensor([p]), do_sample=True, max_new_tokens=24,
                                          pad_token_id=tokenizer.pad_token_id)[0, len(p):].tolist() for p in prompts]
        gaps[name] = guards.rollout_gap(model, prompts, completions)
    assert gaps["policy"] > 0 > gaps["base"], gaps
    assert guards.rollouts_with_adapter(gaps["policy"], 1) == ""
    assert guards.rollouts_with_adapter(gaps["base"], 1).startswith("guard rollouts-with-adapter: the rollouts at "
                                                                    "step 1 are")
