"""The data benchmark runs end to end on the CPU, so CI keeps it working (the GPU one: tests/test_gpu_check.py)."""

import json

from tests.conftest import run_script


def test_data_bench_runs(qwen3_tokenizer, tmp_path):  # the fixture skips where the real tokenizer is absent
    out = tmp_path / "bench.json"
    run_script("scripts/bench_data.py", "--rows", "60", "--max-len", "4096", "--rss", "30", "--json", str(out))
    report = json.loads(out.read_text())
    assert report["kit_cold_s"] > report["kit_cached_s"] > 0 and report["reference_s"] > 0 and report["limit_s"] > 0
    assert report["rss"][0]["rss_peak_mb"] >= report["rss"][0]["rss_after_imports_mb"]
