"""The data benchmark runs end to end on the CPU, so CI keeps it working (the GPU one: tests/test_gpu_check.py)."""

import json

from tests.conftest import run_script


def test_data_bench_runs(qwen3_tokenizer, tmp_path):  # the fixture skips where the real tokenizer is absent
    out = tmp_path / "bench.json"
    run_script("scripts/bench_data.py", "--rows", "60", "--max-len", "4096", "--rss", "30", "--json", str(out))
    report = json.loads(out.read_text())
    assert report["kit_cold_s"] > report["kit_cached_s"] > 0 and report["reference_s"] > 0 and report["limit_s"] > 0
    assert report["rss"][0]["rss_peak_mb"] >= report["rss"][0]["rss_after_imports_mb"]


def test_merge_bench_runs(tmp_path):
    out = run_script("scripts/bench_merge.py", "--shape", "tiny", "--shard-size", "1MB", "--repeats", "1",
                     "--folder", str(tmp_path)).stdout
    assert "tiny: 0.00 GB in 4 shards" in out and "cp + sync" in out and "median ratio merge / (cp + sync)" in out
    assert not (tmp_path / "merged").exists() and not (tmp_path / "copy").exists()


def test_eval_bench_runs(smoke_run):
    out = run_script("scripts/bench_eval.py", "--run", str(smoke_run), "--skip-eval", "--tokens", "4",
                     "--repeats", "1").stdout
    rows = [line.split()[:3] for line in out.splitlines() if line.startswith(("  wall ", "  CPU "))]
    assert [row[1] for row in rows] == ["adapter", "adapter", "merged"] * 2, out
