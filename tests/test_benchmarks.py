"""Math to score: the held-out slice (disjoint from training by construction), benchmarks through the real
modelscope client from a fake ModelScope, and local files."""

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kit.data import prepare_data
from kit.data.formats import held_out
from kit.evaluation.benchmarks import BENCHMARKS, EvalDataError, math_rows, problem_and_answer
from tests.fake_modelscope import FakeModelScope, FakeRepo


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}, {"role": "assistant", "content": "..."}]


def test_held_out_depends_on_the_problem_text_only():
    problems = [f"What is {i} + {i}?" for i in range(2000)]
    chosen = [p for p in problems if held_out(_user(p), 0.1)]
    assert 150 < len(chosen) < 250
    assert all(held_out(_user(f"  {p.replace(' ', '   ')}\n"), 0.1) for p in chosen)  # whitespace does not matter
    assert not any(held_out(_user(p), 0.0) for p in problems)


def test_held_out_problems_never_reach_training(smoke_cfg, tiny_tokenizer, tmp_path):
    cfg = smoke_cfg("data.reasoning.max_rows=0")  # the whole file, as the evaluation reads it
    prepared = prepare_data(cfg, tiny_tokenizer, progress=False)
    held = prepared.report["sources"]["reasoning"]["dropped"]["filtered_held_out"]
    assert 0.05 * 400 < held < 0.15 * 400
    rows = math_rows(cfg, 1000, cache_dir=tmp_path)
    assert 0 < len(rows) <= held and len({r["problem"] for r in rows}) == len(rows)
    trained = "\n".join(tiny_tokenizer.decode(ids) for ids in prepared.train["input_ids"])
    trained += "\n".join(tiny_tokenizer.decode(ids) for ids in prepared.eval["input_ids"])
    assert not [r["problem"] for r in rows if r["problem"] in trained]
    kept = pq.read_table("data/openmath_sample.parquet").to_pylist()
    assert sum(r["problem"] in trained for r in kept) > 300  # the check can see a problem when it is there


def test_every_copy_of_a_problem_is_on_the_same_side(smoke_cfg, tiny_tokenizer, tmp_path):
    rows = pq.read_table("data/openmath_sample.parquet").to_pylist()
    twice = rows + [{**r, "generated_solution": r["generated_solution"] + "\nAnother solution."} for r in rows]
    path = tmp_path / "twice.parquet"
    pq.write_table(pa.Table.from_pylist(twice), path)
    whole = smoke_cfg("data.reasoning.max_rows=0")
    cfg = smoke_cfg(f"data.reasoning.path={path}", "data.reasoning.max_rows=0")
    once = prepare_data(whole, tiny_tokenizer, progress=False).report["sources"]["reasoning"]["dropped"]
    report = prepare_data(cfg, tiny_tokenizer, progress=False).report["sources"]["reasoning"]["dropped"]
    assert report["filtered_held_out"] == 2 * once["filtered_held_out"]
    assert math_rows(cfg, 1000, cache_dir=tmp_path) == math_rows(whole, 1000, cache_dir=tmp_path)  # once each


def test_no_held_out_share_is_refused_in_one_sentence(smoke_cfg, tmp_path):
    with pytest.raises(EvalDataError, match="data.reasoning.heldout is 0, so nothing was kept out of training"):
        math_rows(smoke_cfg("data.reasoning.heldout=0"), 5, cache_dir=tmp_path)


@pytest.mark.parametrize("row,expected", [
    ({"problem": "Compute $1+1$.", "solution": "... \\boxed{2}", "answer": "2", "level": 1}, ("Compute $1+1$.", "2")),
    ({"question": "Tom has 1,200 apples...", "answer": "He has 1,200 + 400 apples.\n#### 1,600"},
     ("Tom has 1,200 apples...", "1600")),  # GSM8K
    ({"id": 60, "problem": "Find $m+n$.", "solution": "\\boxed{204}"}, ("Find $m+n$.", "204")),  # AIME 2024
    ({"problem": "Solve $x+1=3$.", "expected_answer": "2", "generated_solution": "\\boxed{3}"},
     ("Solve $x+1=3$.", "2")),  # OpenMathReasoning: the expected answer, not the solution's
    ({"question": "No answer here."}, ("No answer here.", "")),
])
def test_published_schemas(row, expected):
    assert problem_and_answer(row) == expected


def _parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


def test_a_benchmark_comes_from_modelscope_through_the_kits_hub(smoke_cfg, monkeypatch, tmp_path):
    b = BENCHMARKS["gsm8k"]
    test = [{"question": f"Question {i}?", "answer": f"Because.\n#### {i}"} for i in range(5)]
    train = [{"question": "Train question?", "answer": "#### 0"}]
    fake = FakeModelScope(datasets={b.repo: FakeRepo({f"{b.subset}/test-00000-of-00001.parquet": _parquet(test),
                                                      f"{b.subset}/train-00000-of-00001.parquet": _parquet(train),
                                                      "README.md": b"# GSM8K"})}).start()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", fake.endpoint)
    try:
        rows = math_rows(smoke_cfg("eval.math=gsm8k"), 3, cache_dir=tmp_path)
    finally:
        fake.stop()
    assert rows == [{"problem": f"Question {i}?", "expected_answer": str(i)} for i in range(3)]
    assert [r.split("FilePath=")[1] for r in fake.downloads()] == ["main%2Ftest-00000-of-00001.parquet"]


def test_a_local_file_with_fewer_rows_than_asked(smoke_cfg, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(json.dumps({"problem": f"P{i}", "answer": str(i)}) for i in range(3)))
    assert len(math_rows(smoke_cfg(f"eval.math={path}"), 10, cache_dir=tmp_path)) == 3
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "no problem column"}))
    with pytest.raises(EvalDataError, match=r"bad.jsonl row 1 has no problem \(problem or question\)"):
        math_rows(smoke_cfg(f"eval.math={tmp_path / 'bad.jsonl'}"), 10, cache_dir=tmp_path)


@pytest.mark.parametrize("name,content,said", [
    ("m.jsonl", b'{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?", "answ\n', r"m.jsonl line 2: invalid JSON"),
    ("m.jsonl", b'{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n',
     r"m.jsonl row 2 has no answer \(expected_answer, answer or solution\)"),
    ("m.jsonl", b'{"answer": "2"}\n', r"m.jsonl row 1 has no problem \(problem or question\)"),
    ("m.parquet", b"PAR1" + b"\x00" * 100, r"m.parquet is not a readable parquet file"),
    ("m.json", b'[{"problem": "1+1?", "answer": "2"}', r"m.json line 1: invalid JSON"),
])
def test_a_bad_line_of_a_benchmark_file_is_named(smoke_cfg, tmp_path, name, content, said):
    """A file of one's own is scored whole: a bad line or a row without its fields is named, not skipped."""
    from kit.data.formats import DataError

    (tmp_path / name).write_bytes(content)
    with pytest.raises((EvalDataError, DataError), match=said):
        math_rows(smoke_cfg(f"eval.math={tmp_path / name}"), 5)
