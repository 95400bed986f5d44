"""The benchmark scripts run end to end on CPU with the tiny model, so CI keeps them working."""

import json

from tests.conftest import run_script


def test_training_bench_runs_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    run_script("scripts/bench.py", "--shapes", "tiny", "--steps", "3", "--warmup", "1", "--seq", "256",
               "--json", str(out))
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["backend"] == "hf" and result["tokens_per_s"] > 0 and result["steps"] == 3
    assert report["padding_waste"]["padded_batches"] > report["padding_waste"]["packed_bfd"] >= 0
    assert "python scripts/bench.py" in report["command"] and report["versions"]["torch"]


def test_data_bench_runs(qwen3_tokenizer, tmp_path):  # the fixture skips where the real tokenizer is absent
    out = tmp_path / "bench.json"
    run_script("scripts/bench_data.py", "--rows", "60", "--max-len", "4096", "--rss", "30", "--json", str(out))
    report = json.loads(out.read_text())
    assert report["kit_cold_s"] > report["kit_cached_s"] > 0 and report["reference_s"] > 0 and report["limit_s"] > 0
    assert report["rss"][0]["rss_peak_mb"] >= report["rss"][0]["rss_after_imports_mb"]
