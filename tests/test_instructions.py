import json

import pytest

from kit.data.formats import DataError
from kit.evaluation.instructions import CHECKS, follows, load_instructions, word_count

SHIPPED = "data/eval/instructions.jsonl"


@pytest.mark.parametrize("check,arguments,kept,broken", [
    ("max_words", {"n": 5}, "Rain taps the window softly.", "Rain taps the window softly all afternoon."),
    ("max_words", {"n": 14}, "长城是中国古代的军事防御工程。", "长城是中国古代修建的伟大军事防御工程。"),  # 字 = word
    ("min_words", {"n": 3}, "one two three", "one two"),
    ("include", {"words": ["chlorophyll", "sunlight"]}, "Sunlight hits chlorophyll.", "Light hits leaves."),
    ("exclude", {"words": ["hot", "sun"]}, "Long bright days.", "The sun is out."),
    ("frequency", {"word": "tide", "n": 2}, "The tide rises; the tide falls.", "The tide rises."),
    ("bullets", {"n": 3}, "- a\n- b\n* c", "- a\n- b"),
    ("bullets", {"n": 2}, "Intro:\n- a\n- b", "- a\n- b\n- c"),
    ("numbered", {"n": 2}, "1. boil\n2) wait", "1. boil"),
    ("paragraphs", {"n": 2}, "First part.\n\nSecond part.", "One block\nof text."),
    ("in_chinese", {}, "机器学习用数据训练模型（model）。", "Machine learning trains a model."),
    ("in_english", {}, "Beijing is the capital.", "北京是首都。"),
    ("json_object", {"keys": ["city", "country"]}, '{"city": "Tokyo", "country": "Japan"}', '{"city": "Tokyo"}'),
    ("json_object", {}, '```json\n{"a": 1}\n```', "Here it is: {\"a\": 1}"),
    ("lowercase", {}, "cats nap all day.", "Cats nap all day."),
    ("uppercase", {}, "KEEP EXITS CLEAR.", "Keep exits clear."),
    ("no_commas", {}, "Tea then a walk.", "Tea, then a walk."),
    ("no_commas", {}, "先喝茶再散步。", "先喝茶，再散步。"),
    ("starts_with", {"text": "Dear"}, "Dear Ms Li, thank you.", "Thank you, dear Ms Li."),
    ("ends_with", {"text": "谢谢！"}, "推荐《活着》。谢谢！", "谢谢！推荐《活着》。"),
    ("quoted", {}, '"Fresh bread daily"', "Fresh bread daily"),
    ("title", {}, "<<Autumn>>\nLeaves fall.", "Autumn\nLeaves fall."),
    ("placeholders", {"n": 2}, "Dear [name], I am [me].", "Dear [name], I am me."),
])
def test_each_check_keeps_and_breaks(check, arguments, kept, broken):
    assert CHECKS[check](kept, **arguments) is True
    assert CHECKS[check](broken, **arguments) is False


def test_every_check_is_tested():
    tested = {"max_words", "min_words", "include", "exclude", "frequency", "bullets", "numbered", "paragraphs",
              "in_chinese", "in_english", "json_object", "lowercase", "uppercase", "no_commas", "starts_with",
              "ends_with", "quoted", "title", "placeholders"}
    assert set(CHECKS) == tested


def test_an_empty_answer_keeps_no_instruction():
    item = load_instructions(SHIPPED)[0]
    assert follows(item, "") == [False] * len(item.checks)


def test_shipped_prompts_are_valid_in_both_languages():
    items = load_instructions(SHIPPED)
    assert len(items) >= 36 and len({i.id for i in items}) == len(items)
    chinese = [i for i in items if CHECKS["in_chinese"](i.prompt)]
    assert 8 <= len(chinese) < len(items) / 2
    assert len(load_instructions(SHIPPED, 5)) == 5
    assert word_count("one two 三四") == 4


@pytest.mark.parametrize("line,message", [
    ('{"prompt": "x", "checks": [{"check": "max_wrds", "n": 3}]}', "line 2 checks\\[0\\]: unknown check 'max_wrds'"),
    ('{"prompt": "x", "checks": [{"check": "max_words"}]}',
     "line 2 checks\\[0\\]: check 'max_words' takes \\['n'\\], got \\[\\]"),
    ('{"prompt": "x", "checks": []}', "line 2: field 'checks' must be a non-empty list"),
    ('{"checks": [{"check": "quoted"}]}', "line 2: field 'prompt' must be non-empty text"),
    ('{"prompt": "x",', "line 2: invalid JSON"),
])
def test_a_bad_line_names_file_line_and_field(tmp_path, line, message):
    path = tmp_path / "mine.jsonl"
    good = json.dumps({"prompt": "Say hi.", "checks": [{"check": "max_words", "n": 3}]})
    path.write_text(f"{good}\n{line}\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"mine.jsonl {message}"):
        load_instructions(path)


@pytest.mark.parametrize("check,message", [
    ({"check": "max_words", "n": "ten"}, "argument 'n' must be a whole number, got 'ten'"),
    ({"check": "max_words", "n": True}, "argument 'n' must be a whole number, got True"),
    ({"check": "include", "words": [1, 2]}, r"argument 'words' must be a list of text, got \[1, 2\]"),
    ({"check": "starts_with", "text": 5}, "argument 'text' must be text, got 5"),
])
def test_argument_types_are_checked_when_the_file_loads(tmp_path, check, message):
    """Before any generation: a wrong type used to fail only when scoring, after the replies were generated."""
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"prompt": "x", "checks": [check]}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"mine.jsonl line 1 checks\\[0\\]: check '{check['check']}' {message}"):
        load_instructions(path)


def test_a_bom_is_accepted_and_other_encodings_or_a_missing_file_named(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "Say hi.", "checks": [{"check": "quoted"}]}).encode())
    assert load_instructions(path)[0].prompt == "Say hi."  # as Windows Notepad saves it
    latin = json.dumps({"prompt": "Un café ?", "checks": [{"check": "in_english"}]}, ensure_ascii=False)
    path.write_bytes(("\n" + latin).encode("latin-1"))  # saved in Latin-1
    with pytest.raises(DataError, match=r"mine.jsonl line 2: not UTF-8 text \(byte 0xe9 at column 19\); save the file "
                                        r"as UTF-8"):
        load_instructions(path)
    with pytest.raises(DataError, match=r"absent.jsonl: cannot be read \(No such file or directory\)"):
        load_instructions(tmp_path / "absent.jsonl")
