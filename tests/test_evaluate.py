import json
import shutil

import pytest

from kit.evaluation.answers import last_boxed, math_correct
from kit.evaluation.instructions import Instruction
from kit.evaluation.scores import EvalError, compare, evaluate, show_replies, tuned_adapter
from kit.inference.generate import split_reasoning
from tests.conftest import run_script


@pytest.mark.parametrize("answer,expected,correct", [
    ("so the result is \\boxed{\\frac{1}{2}}", "1/2", True),
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{1/2}", "0.5", True),
    ("first \\boxed{3}, no wait: \\boxed{4}", "4", True),  # the last boxed answer counts
    ("\\boxed{x = 7}", "7", True),
    ("\\boxed{3}", "4", False),
    ("the answer is 4", "4", False),  # no boxed answer
    ("\\boxed{\\sqrt{2}}", "2^{1/2}", True),
    ("\\boxed{\\frac{61}{12}}", "\\frac{61}{13}", False),
])
def test_math_scorer(answer, expected, correct):
    assert math_correct(answer, expected) is correct


def test_last_boxed_handles_nested_braces():
    assert last_boxed("\\boxed{\\frac{a}{b}} and \\boxed{\\frac{1}{\\sqrt{2}}}") == "\\frac{1}{\\sqrt{2}}"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("\\boxed{a}b}") == "a" and last_boxed("\\boxed{}") == ""
    assert last_boxed("\\boxed{{x}}") == "{x}"
    assert last_boxed("no box {at all}") is None and last_boxed("no box, but a brace}") is None


@pytest.mark.parametrize("answer,expected", [("\\boxed{4}", ""), ("\\boxed{4}", "  "), ("\\boxed{}", ""),
                                             ("\\boxed{}", "4"), ("\\boxed{4", "4"), ("\\boxed{\\\\}", "\\\\"),
                                             ("there is no such number", "None")])  # a gold answer of "None"
def test_an_answer_without_something_to_compare_is_wrong(answer, expected):
    """No gold answer, an empty or unclosed box, or text math-verify reads as nothing: never counted right."""
    assert math_correct(answer, expected) is False


def _generator(on_text: str, off_text: str, chat_on: str = "<think>\nok\n</think>\n\n- a\n- b",
               chat_off: str = "- a\n- b"):
    """A model that answers math with on_text/off_text and every other prompt with chat_on/chat_off."""
    def run(conversations, thinking):
        def one(c):
            if c[-1]["content"].startswith("Solve"):
                return on_text if thinking else off_text
            return chat_on if thinking else chat_off
        return [split_reasoning(one(c)) for c in conversations]
    return run


MATH = [{"problem": "Solve for x: 2x = 8.", "expected_answer": "4"}] * 3
TWO_BULLETS = [Instruction("b", "List two things as bullets.", [{"check": "bullets", "n": 2}])]
BULLETS_AND_SHORT = [Instruction("c", "Two bullets, at most 3 words.",
                                 [{"check": "bullets", "n": 2}, {"check": "max_words", "n": 3}])]


def test_a_well_behaved_model_passes_every_check():
    report = evaluate(_generator("<think>\n2x=8 so x=4\n</think>\n\n\\boxed{4}", "\\boxed{4}"), MATH, TWO_BULLETS)
    assert report["math_thinking_on"] == report["math_thinking_off"] == 1.0
    assert report["switch_thinking_on"] == report["switch_thinking_off"] == 1.0
    assert report["instructions_thinking_on"] == report["instructions_thinking_off"] == 1.0
    assert (report["n_math"], report["n_instructions"], report["n_prompts"], report["n_checks"]) == (3, 1, 4, 1)


def test_switch_check_flags_a_model_that_always_thinks():
    always = "<think>\nlet me think\n</think>\n\n\\boxed{4}"
    report = evaluate(_generator(always, always, chat_off="<think>\nhm\n</think>\n\n- a\n- b"), MATH, TWO_BULLETS)
    assert report["switch_thinking_on"] == 1.0 and report["switch_thinking_off"] == 0.0


def test_switch_check_flags_a_model_that_stops_thinking_on_chat_prompts():
    report = evaluate(_generator("<think>\nx=4\n</think>\n\n\\boxed{4}", "\\boxed{4}", chat_on="- a\n- b"), MATH,
                      TWO_BULLETS)
    assert report["switch_thinking_on"] == 0.75  # the 3 math prompts think, the instruction prompt does not


def test_a_think_block_never_closed_scores_nothing():
    report = evaluate(_generator("<think>\nx is 4, x is 4, x is 4", "\\boxed{4}",
                                 chat_on="<think>\n- a\n- b"), MATH, TWO_BULLETS)
    assert report["switch_thinking_on"] == 0.0 and report["math_thinking_on"] == 0.0
    assert report["instructions_thinking_on"] == 0.0  # the bullets are inside the unfinished reasoning
    assert report["math_thinking_off"] == 1.0


def test_prompt_level_needs_every_instruction_kept():
    report = evaluate(_generator("\\boxed{4}", "\\boxed{4}", chat_off="- one two\n- three four"), [],
                      BULLETS_AND_SHORT)
    assert report["instructions_thinking_off"] == 0.0 and report["single_instructions_thinking_off"] == 0.5
    assert report["math_thinking_on"] is None


def test_compare_and_replies_are_readable_in_full():
    long_answer = "\\boxed{4} " + "word " * 200
    report = evaluate(_generator(f"<think>\nx=4\n</think>\n\n{long_answer}", "\\boxed{5}"), MATH, TWO_BULLETS)
    reports = {"base": {**report, "model": "a"}, "tuned": {**report, "model": "b"}}
    table = compare(reports)
    assert table.startswith("metric") and "math_thinking_on" in table and "tuned: b" in table
    text = show_replies(reports, "math", limit=1)
    assert long_answer.strip() in text and "thinking off: wrong" in text
    assert "bullets kept" in show_replies(reports, "instructions")


def test_a_run_without_adapter_is_refused_in_one_sentence(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run, ignore=shutil.ignore_patterns("adapter"))
    with pytest.raises(EvalError, match=r"has no adapter/ .*eval.adapter=newest evaluates its newest checkpoint "
                                        r"\(checkpoint-100\)"):
        tuned_adapter(run, "final")
    assert tuned_adapter(run, "newest").name == "checkpoint-100"
    result = run_script("scripts/eval.py", "--run", str(run), check=False)
    assert result.returncode == 1 and result.stderr.startswith("error:") and "Traceback" not in result.stderr
    assert "eval.adapter=newest" in result.stderr  # eval's own sentence, with the way out it offers
    run_script("scripts/eval.py", "--run", str(run), "eval.adapter=newest", "eval.n_math=1", "eval.n_instructions=0")
    assert "checkpoints/checkpoint-100 on " in json.loads((run / "eval.json").read_text())["tuned"]["model"]


def test_held_out_problems_are_refused_for_a_run_that_trained_on_them(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_run, run)
    report = json.loads((run / "data_report.json").read_text())
    report["sources"]["reasoning"]["dropped"].pop("filtered_held_out")  # as a run prepared before held-out slices
    (run / "data_report.json").write_text(json.dumps(report))
    result = run_script("scripts/eval.py", "--run", str(run), check=False)
    assert result.returncode == 1 and "counts no held-out problem" in result.stderr
    result = run_script("scripts/eval.py", "--run", str(smoke_run), "data.reasoning.heldout=0.2", check=False)
    assert result.returncode == 1 and "differs from the run's config.yaml" in result.stderr


def test_the_evaluation_sees_what_the_smoke_run_learned(smoke_run):
    """The tiny base works sums but never boxes an answer in the chat template; the smoke run learns that from
    data/, and `qwen3-kit eval` sees it on held-out sums it never trained on. Measured on this sandbox (n = all 49
    held-out sums, seeded sampling): math with thinking on 0/49 for the base (95 % Wilson interval 0-0.07) and 35/49
    tuned (0.58-0.82; most of the rest are the slips the data teaches, kit.models.toy); thinking on, the tuned model
    works the columns in its think block (49/49), thinking off it answers at once (49/49), as the data's chat does;
    the toy chat's instructions are kept."""
    result = run_script("scripts/eval.py", "--run", str(smoke_run), "eval.n_math=50", "eval.batch_size=16")
    assert "fewer than the 50 asked" in result.stdout  # the tiny run's held-out slice holds fewer problems
    assert "(local, PeftModelForCausalLM)" in result.stdout
    reports = json.loads((smoke_run / "eval.json").read_text())
    assert set(reports) == {"base", "tuned"}
    base, tuned = reports["base"], reports["tuned"]
    assert tuned["n_instructions"] == 20 and tuned["n_math"] == 49
    assert base["math_thinking_on"] <= 0.1 and tuned["math_thinking_on"] >= 0.5
    math = tuned["details"]["math"]
    assert sum(m["thinking_on"]["reasoning"].startswith("Ones: ") for m in math) >= 0.8 * len(math)
    assert sum("Ones" not in m["thinking_off"]["answer"] for m in math) >= 0.8 * len(math)
    assert tuned["switch_thinking_on"] >= 0.7 and tuned["switch_thinking_off"] >= 0.8
    for mode in ("on", "off"):
        assert tuned[f"instructions_thinking_{mode}"] >= base[f"instructions_thinking_{mode}"] - 0.2
    assert tuned["math_source"]["training_data_fingerprint"] == \
        json.loads((smoke_run / "data_report.json").read_text())["fingerprint"]


def test_a_damaged_data_report_is_named_before_anything_is_generated(run_copy):
    from kit.config import load_config
    from kit.errors import KitError
    from kit.evaluation.scores import evaluate_run

    run = run_copy(checkpoints=False)
    (run / "data_report.json").write_text((run / "data_report.json").read_text()[:200])
    with pytest.raises(KitError, match=r"data_report.json is not the JSON the kit wrote \(line \d+\): it was cut short "
                                       r"or edited; run the run's train command again"):
        evaluate_run(run, load_config(run / "config.yaml"))
