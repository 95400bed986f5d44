"""GRPO after SFT on the tiny model (CPU): the run folder, each reward logged, held-out problems kept out, the run
taken by eval and export, resume after preemption, and the rewards scoring what the evaluation scores."""

import json
import os
import re
import shutil
import signal

import pytest
import yaml
from safetensors.torch import load_file

from kit.config import ConfigError, load_config
from kit.errors import KitError
from tests.conftest import ROOT, run_script


def _records(run) -> list[dict]:
    return [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]


def _largest_difference(a, b) -> float:
    a, b = (load_file(run / "adapter" / "adapter_model.safetensors") for run in (a, b))
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_grpo_run_folder_logs_each_reward_and_scores_before_and_after(grpo_run, smoke_run):
    config = yaml.safe_load((grpo_run / "config.yaml").read_text())
    assert config["model"]["adapter"] == str(smoke_run / "adapter") and config["grpo"]["run_name"] == "smoke-grpo"
    steps = [r for r in _records(grpo_run) if "reward" in r]
    assert [r["step"] for r in steps] == list(range(1, 17))
    for r in steps:  # each reward on its own, beside their weighted sum
        assert r["reward"] == pytest.approx(r["rewards/correct/mean"] + 0.2 * r["rewards/format/mean"], abs=1e-6)
        assert 0 < r["completions/mean_length"] <= 96
    # guard rollouts-with-adapter, once after the first update: the rollouts are the SFT adapter's, not the base's
    assert [r["step"] for r in steps if "guard/rollout_gap" in r] == [2] and steps[1]["guard/rollout_gap"] > 0
    assert sorted(p.name for p in (grpo_run / "checkpoints").glob("checkpoint-*")) == ["checkpoint-16", "checkpoint-8"]
    assert (grpo_run / "adapter" / "tokenizer.json").is_file()
    assert 0 < _largest_difference(grpo_run, smoke_run) < 1e-2  # the SFT adapter, trained a little further
    checks = json.loads((grpo_run / "logs" / "before_after.json").read_text())
    for when in ("before", "after"):
        assert checks[when]["n_math"] == 40
        assert checks[when]["switch_thinking_off"] is not None  # the mode RL on thinking traces can erode


def test_grpo_unlearns_the_slips_sft_taught_on_problems_neither_stage_trained_on(grpo_run):
    """Half of the sample traces with a carry drop it (scripts/make_sample_data.py), and SFT learns the slip with the
    steps; GRPO's correctness reward, on problems past the rows SFT read, unlearns it. Scored on the 40 held-out sums
    (greedy, thinking on), which neither stage trained on: 31/40 before (Wilson 95 % 0.62-0.88), 40/40 after
    (0.91-1) at seeds 1, 2, 4 and 3407, 39/40 at seed 5, 16 steps of 4 problems x 8 completions."""
    report = json.loads((grpo_run / "data_report.json").read_text())
    assert report["prompts"]["skipped_rows"] == 343 and report["prompts"]["problems"] == 48  # past SFT's 343 rows
    checks = json.loads((grpo_run / "logs" / "before_after.json").read_text())
    before, after = checks["before"], checks["after"]
    assert before["n_math"] == after["n_math"] == 40
    assert before["math_thinking_on"] <= 0.85 and after["math_thinking_on"] >= 0.95
    slips = [row["thinking_on"]["reasoning"] for row in before["details"]["math"] if not row["thinking_on"]["correct"]]
    assert slips and all(re.match(r"Ones: \d \+ \d = 1\d\. Write \d, carry 0\.", trace) for trace in slips)  # dropped
    for kept in ("switch_thinking_off", "instructions_thinking_off"):  # what RL on thinking traces can erode
        assert after[kept] >= before[kept] - 0.1


def test_prompts_leave_out_every_problem_the_evaluation_holds_out(smoke_cfg, tiny_tokenizer):
    from kit.data.formats import held_out
    from kit.data.prompts import grpo_prompts
    from kit.evaluation.benchmarks import math_rows

    cfg = smoke_cfg("grpo.max_steps=1000", "grpo.skip_rows=0")  # more problems than the sample has: every row read
    prompts = grpo_prompts(cfg, tiny_tokenizer)
    dropped = prompts.report["sources"]["reasoning"]["dropped"]
    assert dropped["filtered_held_out"] > 0 and dropped["duplicate_problem"] > 0
    assert dropped["filtered_grpo_problem_type"] > 0  # no_answer_extracted: answers guessed, not found
    problems = [row["prompt"][0]["content"] for row in prompts.train]
    assert len(problems) == len(set(problems)) == prompts.report["prompts"]["problems"]
    assert not any(held_out(row["prompt"], cfg.data.reasoning.heldout) for row in prompts.train)
    assert not {row["problem"] for row in math_rows(cfg, 1000)} & set(problems)
    assert all(row["expected_answer"] for row in prompts.train)
    skipped = grpo_prompts(smoke_cfg("grpo.max_steps=1000", "grpo.skip_rows=7"), tiny_tokenizer).report
    for source in (prompts.report["sources"]["reasoning"], skipped["sources"]["reasoning"]):
        assert source["rows_read"] == source["rows_valid"] + sum(source["dropped"].values())  # read = valid + dropped
    assert skipped["sources"]["reasoning"]["dropped"]["skipped_rows"] == 7


def test_eval_and_export_take_a_grpo_run_unchanged(grpo_run, tmp_path):
    from kit.cli import run_config
    from kit.export.export import export_run

    result = run_script("scripts/eval.py", "--run", str(grpo_run), "eval.n_math=2", "eval.n_instructions=0")
    assert "math_thinking_on" in result.stdout
    report = json.loads((grpo_run / "eval.json").read_text())
    assert report["tuned"]["math_source"]["heldout_share"] == 0.1  # its held-out check passed
    cfg = run_config(grpo_run, [f"export.out_dir={tmp_path}", "export.formats=[adapter]"])
    assert (export_run(grpo_run, cfg).folders["adapter"] / "adapter_model.safetensors").is_file()


def test_a_preempted_grpo_run_resumes_to_the_same_adapter(grpo_run, smoke_run, tmp_path):
    from transformers import TrainerCallback

    from kit.training.reinforce import grpo

    class PreemptedAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 8:
                os.kill(os.getpid(), signal.SIGTERM)

    # The same run as the session's, but from model.adapter and unscored: what it trains is the same.
    cfg = load_config(ROOT / "configs/smoke.yaml", [f"train.output_dir={tmp_path}", "grpo.start_from=base",
                                                    f"model.adapter={smoke_run / 'adapter'}",
                                                    "grpo.eval_before_after=false"])
    stopped = grpo(cfg, progress=False, callbacks=[PreemptedAfterFirstCheckpoint()])
    run = tmp_path / "smoke-grpo"
    assert stopped.interrupted and stopped.signal == signal.SIGTERM and stopped.steps == 9
    assert not (run / "adapter").exists() and (run / "checkpoints" / "checkpoint-9").is_dir()
    resumed = grpo(cfg, progress=False)
    assert not resumed.interrupted and resumed.steps == 16
    assert [step for step, _ in resumed.rewards] == list(range(1, 17))  # the steps after the checkpoint logged once
    assert _largest_difference(run, grpo_run) < 1e-5
    straight = {r["step"]: r for r in _records(grpo_run) if "reward" in r}
    for r in _records(run):
        if "reward" in r:
            assert r["entropy"] == pytest.approx(straight[r["step"]]["entropy"], rel=1e-4)
            assert r["completions/mean_length"] == straight[r["step"]]["completions/mean_length"]


def test_a_run_stopped_while_scored_after_grpo_is_scored_when_rerun(grpo_run, smoke_run, tmp_path):
    from kit.training.reinforce import grpo

    run = tmp_path / "smoke-grpo"
    shutil.copytree(grpo_run, run)
    checks = json.loads((run / "logs" / "before_after.json").read_text())
    del checks["after"]  # what a kill during the scoring after the last step leaves: the adapter, no "after"
    (run / "logs" / "before_after.json").write_text(json.dumps(checks))
    same = [f"train.output_dir={tmp_path}", "grpo.start_from=base", f"model.adapter={smoke_run / 'adapter'}"]
    with pytest.raises(KitError, match=r"trained with other settings \(data.reasoning.max_rows"):
        grpo(load_config(ROOT / "configs/smoke.yaml", [*same, "data.reasoning.max_rows=50"]), progress=False)
    # A chat setting, which GRPO never reads, is no other run.
    result = grpo(load_config(ROOT / "configs/smoke.yaml", [*same, "data.chat_ratio=0.2"]), progress=False)
    assert result.steps == 16 and not result.interrupted  # nothing trained again
    after = json.loads((grpo_run / "logs" / "before_after.json").read_text())["after"]
    assert result.checks["after"] == after | {"model": str(run / "adapter")}  # the scores the run itself got


def test_grpo_starts_from_a_finished_sft_run_that_held_out_the_same_problems(smoke_run, smoke_cfg, tmp_path):
    from kit.training.reinforce import start

    with pytest.raises(KitError, match=r"no finished run at .* GRPO continues it \(grpo.start_from=sft"):
        start(smoke_cfg(f"train.output_dir={tmp_path}"))
    with pytest.raises(KitError, match=r"held out 0.1 of data.reasoning's problems and this config holds out 0.2"):
        start(smoke_cfg(f"train.output_dir={smoke_run.parent}", "data.reasoning.heldout=0.2"))
    cfg = start(smoke_cfg(f"train.output_dir={smoke_run.parent}", "train.run_name=smoke", "grpo.start_from=base"))
    assert cfg.model.adapter == "" and cfg.grpo.run_name == "smoke-grpo"
    short = smoke_cfg("model.max_seq_length=128")  # SFT at a length GRPO's settings do not fit: a valid config
    with pytest.raises(ConfigError, match=r"grpo.max_prompt_length \+ grpo.max_completion_length is 64 \+ 96, more "
                                          r"than model.max_seq_length 128"):
        start(short)  # GRPO says so when it starts
    with pytest.raises(ConfigError, match=r"data.reasoning.heldout is 0: .* or set grpo.eval_before_after=false"):
        start(smoke_cfg("data.reasoning.heldout=0", "grpo.start_from=base"))  # before any model is loaded


@pytest.mark.parametrize("fault", ["weights cut short", "config cut short"])
def test_grpo_names_a_damaged_sft_adapter(run_copy, smoke_cfg, fault):
    from kit.training.reinforce import start
    from tests.conftest import ADAPTER_FAULT_SAID, ADAPTER_FAULTS

    run = run_copy(checkpoints=False)
    ADAPTER_FAULTS[fault](run / "adapter")
    with pytest.raises(KitError, match=ADAPTER_FAULT_SAID):
        start(smoke_cfg(f"train.output_dir={run.parent}"))


def test_grpo_settings_are_validated_with_the_config(smoke_cfg):
    with pytest.raises(ConfigError) as e:
        smoke_cfg("grpo.num_generations=1", "grpo.per_device_train_batch_size=3", "grpo.correct_weight=0",
                  "grpo.format_weight=0", "grpo.generation=sglang")
    assert "grpo.num_generations is 1; it must be at least 2 (completions per problem, compared with each other)" \
        in str(e.value)
    assert "grpo.per_device_train_batch_size is 3; it must divide the 4 completions of a step" in str(e.value)
    assert "there is nothing to reward" in str(e.value) and "grpo.generation" in str(e.value)


def test_rewards_score_what_the_evaluation_scores(qwen3_tokenizer, smoke_cfg):
    from kit.training.rewards import reward_functions

    texts = {
        "right": "<think>\nHalf of one.\n</think>\n\nSo the answer is $\\boxed{\\frac{1}{2}}$.<|im_end|>",
        "wrong": "<think>\nA guess.\n</think>\n\n\\boxed{2}<|im_end|>",
        "cut off": "<think>\nStill thinking about \\boxed{0.5}",
        "two blocks": "<think>\na\n</think>\n\n<think>\nb\n</think>\n\n\\boxed{0.5}<|im_end|>",
        "no reasoning": "\\boxed{0.5}<|im_end|>",
    }
    ids = [qwen3_tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts.values()]
    functions, weights = reward_functions(smoke_cfg("grpo.length_weight=0.5").grpo, qwen3_tokenizer)
    assert [f.__name__ for f in functions] == ["correct", "format", "length"] and weights == [1.0, 0.2, 0.5]
    scored = {f.__name__: dict(zip(texts, f(completion_ids=ids, expected_answer=["0.5"] * len(ids)), strict=True))
              for f in functions}
    assert scored["correct"] == {"right": 1, "wrong": 0, "cut off": 0, "two blocks": 1, "no reasoning": 1}
    assert scored["format"] == {"right": 1, "wrong": 1, "cut off": 0, "two blocks": 0, "no reasoning": 0}
    assert scored["length"]["right"] == -len(ids[0]) / 96
    off = reward_functions(smoke_cfg("grpo.thinking=false", "grpo.format_weight=1").grpo, qwen3_tokenizer)[0][1]
    assert off(completion_ids=ids) == [0, 0, 0, 0, 1]  # thinking off: an answer with no think tag


def test_cpu_log_probs_are_the_models_own(tiny_dir, tiny_tokenizer, smoke_cfg, tmp_path):
    """On a CPU TRL's Triton log-prob head is replaced: the log-probabilities of the completion tokens, and their
    entropies, straight from the model's logits."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kit.training.grpo_trainer import build_grpo_trainer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_dir),
                           LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    prompts = Dataset.from_list([{"prompt": [{"role": "user", "content": "1+1?"}], "expected_answer": "2"}])
    trainer = build_grpo_trainer(smoke_cfg(), model, tiny_tokenizer, prompts, tmp_path, progress=False)
    ids = torch.randint(10, len(tiny_tokenizer), (3, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, 7, batch_size=2,
                                                                     compute_entropy=True)
    with torch.no_grad():
        expected = model(input_ids=ids).logits[:, -8:-1].log_softmax(-1)
    assert torch.allclose(logps, expected.gather(-1, ids[:, -7:, None])[..., 0], atol=1e-5)
    assert torch.allclose(entropies, -(expected.exp() * expected).sum(-1), atol=1e-4)
