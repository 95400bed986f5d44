import pytest

from kit.models.memory import estimate, plan_table, recommend


def test_estimate_grows_with_batch_sequence_rank_and_precision():
    base = estimate("8B").total_gb
    assert estimate("8B", batch=4).total_gb > base
    assert estimate("8B", seq_len=4096).total_gb > base
    assert estimate("8B", lora_r=64).total_gb > base
    assert estimate("8B", load_in_4bit=False).total_gb > 2 * base
    assert estimate("8B", gradient_checkpointing=False).total_gb > base


def test_estimate_agrees_with_published_figures():
    # Unsloth: Qwen3-14B LoRA fits a 16 GB T4 (batch 2, seq 2048).
    assert estimate("14B", batch=2, seq_len=2048).total_gb < 16
    # Course table: 32B in 4-bit needs about 37 GB with the plain stack.
    assert estimate("32B", backend="hf").total_gb == pytest.approx(37, rel=0.15)
    # The reason to use unsloth: much less memory than hf at the same shape.
    assert estimate("8B").total_gb < 0.7 * estimate("8B", backend="hf").total_gb


def test_recommend_picks_the_largest_that_fits():
    size, batch, est = recommend(24)
    assert size == "14B" and est.total_gb <= 24
    assert recommend(80)[0] == "32B"
    assert recommend(2) is None
    assert "24 GB" in plan_table()
