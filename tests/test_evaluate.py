import json

import pytest

from kit.evaluate import compare, evaluate, last_boxed, load_eval_rows, math_correct, repetition
from kit.infer import split_reasoning
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


def _generator(on_text: str, off_text: str, chat_text: str = "A fine answer."):
    def run(conversations, thinking):
        if conversations and conversations[0][-1]["content"].startswith("Solve"):
            return [split_reasoning(on_text if thinking else off_text) for _ in conversations]
        return [split_reasoning(chat_text) for _ in conversations]
    return run


MATH = [{"problem": "Solve for x: 2x = 8.", "expected_answer": "4"}] * 3
CHAT = [[{"role": "user", "content": "Tell me about rain."}]] * 2


def test_switch_check_passes_a_well_behaved_model():
    report = evaluate(_generator("<think>\n2x=8 so x=4\n</think>\n\n\\boxed{4}", "\\boxed{4}"), MATH, CHAT)
    assert report["math_accuracy"] == 1.0
    assert report["switch_thinking_on_ok"] == 1.0 and report["switch_thinking_off_ok"] == 1.0
    assert report["chat_nonempty"] == 1.0 and report["chat_no_runaway_repetition"] == 1.0


def test_switch_check_flags_a_model_that_always_thinks():
    always = "<think>\nlet me think\n</think>\n\n\\boxed{4}"
    report = evaluate(_generator(always, always), MATH, CHAT)
    assert report["switch_thinking_on_ok"] == 1.0 and report["switch_thinking_off_ok"] == 0.0


def test_switch_check_flags_a_model_that_never_closes_its_think_block():
    report = evaluate(_generator("<think>\nx is 4, x is 4, x is 4", "\\boxed{4}"), MATH, CHAT)
    assert report["switch_thinking_on_ok"] == 0.0 and report["math_accuracy"] == 0.0


def test_chat_retention_flags_runaway_repetition():
    loop = "the rain the rain the rain " * 20
    report = evaluate(_generator("<think>\nok\n</think>\n\n\\boxed{4}", "\\boxed{4}", chat_text=loop), MATH, CHAT)
    assert report["chat_no_runaway_repetition"] == 0.0
    assert repetition(loop) > 0.9 and repetition("a varied sentence with no loops at all") == 0.0
    table = compare({"base": report, "tuned": report})
    assert "math_accuracy" in table and "tuned" in table


def test_held_out_rows_load():
    math, chat = load_eval_rows("data/openmath_heldout.parquet", "data/finetome_heldout.jsonl", 5, 4)
    assert len(math) == 5 and all(r["expected_answer"] for r in math)
    assert len(chat) == 4 and all(c[-1]["role"] == "user" for c in chat)


def test_eval_script_compares_base_and_tuned(smoke_run):
    result = run_script("scripts/eval.py", "--run", str(smoke_run), "eval.n_math=2", "eval.n_chat=2",
                        "eval.max_new_tokens=8")
    assert "math_accuracy" in result.stdout and "tuned" in result.stdout
    reports = json.loads((smoke_run / "eval.json").read_text())
    assert set(reports) == {"base", "tuned"} and reports["tuned"]["n_math"] == 2
