import pytest

from kit.errors import KitError
from kit.inference.generate import chat, generate, generate_batched, load_for_inference, split_reasoning
from tests.conftest import ADAPTER_FAULT_SAID, ADAPTER_FAULTS


def test_split_reasoning():
    r = split_reasoning("<think>\nstep one\n</think>\n\nThe answer.")
    assert (r.reasoning, r.answer, r.closed) == ("step one", "The answer.", True)
    r = split_reasoning("<think>\nstill going")
    assert (r.reasoning, r.answer, r.closed) == ("still going", "", False)
    r = split_reasoning("Just an answer.")
    assert (r.reasoning, r.answer, r.closed) == ("", "Just an answer.", True)
    r = split_reasoning("<think>\n<think>\nstep\n</think>\n\nThe answer.</think>")  # as vLLM's qwen3 parser reads it
    assert (r.reasoning, r.answer, r.closed) == ("step", "The answer.", True)


def test_generate_from_base_plus_adapter_in_both_modes(smoke_run):
    model, tokenizer = load_for_inference(smoke_run / "adapter")
    assert type(model).__name__ == "PeftModelForCausalLM"
    conversations = [[{"role": "user", "content": "What is 2 + 2?"}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]]
    for thinking in (True, False):
        replies = generate(model, tokenizer, conversations, thinking=thinking, max_new_tokens=12, seed=0)
        assert len(replies) == 2 and all(r.text for r in replies)
    greedy = [chat(model, tokenizer, "What is 2 + 2?", thinking=False, max_new_tokens=12, do_sample=False).text
              for _ in range(2)]
    assert greedy[0] == greedy[1]
    # Qwen3 is never run greedy by default (it repeats itself): each mode samples with Qwen's preset.
    sampled = {chat(model, tokenizer, "What is 2 + 2?", thinking=False, max_new_tokens=12, seed=seed).text
               for seed in range(4)}
    assert len(sampled) > 1


def test_batched_generation_keeps_the_order_given(smoke_run):
    model, tokenizer = load_for_inference(smoke_run / "adapter")
    conversations = [[{"role": "user", "content": "Hi"}], [{"role": "user", "content": "What is 12 * 12? " * 5}],
                     [{"role": "user", "content": "Name a fruit."}]]
    greedy = {"thinking": False, "max_new_tokens": 10, "do_sample": False}
    one_by_one = [generate(model, tokenizer, [c], **greedy)[0].text for c in conversations]
    batched = generate_batched(model, tokenizer, conversations, batch_size=1, progress="test", **greedy)
    assert [r.text for r in batched] == one_by_one
    assert len(generate_batched(model, tokenizer, conversations, batch_size=2, **greedy)) == 3


def test_one_load_replies_as_the_base_and_as_the_merged_tuned_model(smoke_run, tiny_dir):
    """What evaluation does: the adapter disabled gives the base model's replies, and merged into the weights the
    unmerged adapter's, token for token (greedy), from one load."""
    from kit.inference.generate import merge_for_decoding

    conversations = [[{"role": "user", "content": "What is 2 + 2?"}], [{"role": "user", "content": "Name a fruit."}]]
    greedy = {"thinking": False, "max_new_tokens": 16, "do_sample": False}
    base = [r.text for r in generate(*load_for_inference(tiny_dir), conversations, **greedy)]
    model, tokenizer = load_for_inference(smoke_run / "adapter")
    unmerged = [r.text for r in generate(model, tokenizer, conversations, **greedy)]
    merge_for_decoding(model)
    assert all(module.merged for module in model.modules() if hasattr(module, "merged_adapters"))
    assert [r.text for r in generate(model, tokenizer, conversations, **greedy)] == unmerged != base
    with model.disable_adapter():
        assert [r.text for r in generate(model, tokenizer, conversations, **greedy)] == base


@pytest.mark.parametrize("fault", ADAPTER_FAULTS)
def test_a_damaged_adapter_is_named_before_anything_loads(run_copy, fault):
    """What chat and eval (locally) load through: a damaged adapter file is one sentence naming it and the fix,
    not safetensors', peft's or the hub's error about a repo id."""
    run = run_copy(checkpoints=False)
    ADAPTER_FAULTS[fault](run / "adapter")
    with pytest.raises(KitError, match=ADAPTER_FAULT_SAID + ".*run the train command of .* again"):
        load_for_inference(run / "adapter")
