"""kit.evaluation.harnesses: the configs handed to EvalScope and lm-evaluation-harness, and the published figures."""

import yaml

from kit.evaluation.harnesses import PUBLISHED, published_table
from kit.models.profiles import PRESETS
from tests.conftest import run_script


def test_eval_writes_a_config_per_harness_and_mode_for_the_served_export(smoke_cfg, tmp_path):
    """What `qwen3-kit eval --harnesses` writes for a run (it needs only its config): each request sets the mode's
    switch and Qwen's preset for it, and each harness strips a think block the server left in the answer (checked
    against EvalScope 1.14.1's TaskConfig and lm-eval 0.4.13's request payload: docs/evaluation.md)."""
    from kit.config.schema import save_config

    save_config(smoke_cfg(), tmp_path / "config.yaml")
    result = run_script("scripts/eval.py", "--run", str(tmp_path), "--harnesses", "eval.endpoint=http://gpu-box:8000/v1")
    folder = tmp_path / "harnesses"
    assert sorted(p.name for p in folder.iterdir()) == ["evalscope_non-thinking.yaml", "evalscope_thinking.yaml",
                                                         "lm_eval_non-thinking.yaml", "lm_eval_thinking.yaml"]
    for mode, thinking in (("thinking", True), ("non-thinking", False)):
        scope = yaml.safe_load((folder / f"evalscope_{mode}.yaml").read_text())
        assert scope["api_url"] == "http://gpu-box:8000/v1" and scope["model"] == "qwen3-kit"
        assert scope["datasets"] == ["math_500", "aime24", "aime25", "ifeval"]
        assert all(a == {"filters": {"remove_until": "</think>"}} for a in scope["dataset_args"].values())
        sampling = scope["generation_config"]
        assert (sampling["temperature"], sampling["top_p"], sampling["extra_body"]) == (
            PRESETS[thinking]["temperature"], PRESETS[thinking]["top_p"],
            {"top_k": 20, "chat_template_kwargs": {"enable_thinking": thinking}})
        lm = yaml.safe_load((folder / f"lm_eval_{mode}.yaml").read_text())
        assert lm["model_args"]["base_url"] == "http://gpu-box:8000/v1/chat/completions"
        assert lm["model_args"]["think_end_token"] == "</think>" and lm["apply_chat_template"] is True
        assert lm["tasks"] == ["hendrycks_math500", "aime24", "aime25", "ifeval"]
        assert lm["gen_kwargs"] | {"max_gen_toks": 0} == {
            **PRESETS[thinking], "chat_template_kwargs": {"enable_thinking": thinking}, "max_gen_toks": 0}
        assert f"lm-eval run --config {folder / f'lm_eval_{mode}.yaml'}" in result.stdout
        assert f"run_task('{folder / f'evalscope_{mode}.yaml'}')" in result.stdout


def test_the_report_sets_the_published_figures_beside_the_users(smoke_cfg):
    reports = {name: {"math_thinking_on": on, "math_thinking_off": off, "instructions_thinking_on": 0.8,
                      "instructions_thinking_off": 0.75} for name, on, off in (("base", 0.96, 0.86),
                                                                                ("tuned", 0.97, 0.84))}
    cfg = smoke_cfg("model.name=Qwen3-8B", "model.source=modelscope", "eval.math=math500")
    table = published_table(reports, cfg).splitlines()
    assert table[0] == "published for Qwen3-8B (Qwen3 Technical Report, arXiv 2505.09388, Tables 13-20), thinking " \
                       "on / off, percent:"
    assert table[2].split() == ["MATH-500", "97.4", "/", "87.4", "96.0", "/", "86.0", "97.0", "/", "84.0"]
    assert table[3].split() == ["AIME'24", "76.0", "/", "29.1", "-", "-"]  # eval.math scored MATH-500, not AIME
    assert table[5].split()[:5] == ["IFEval", "strict", "prompt*", "85.0", "/"]
    assert published_table(reports, smoke_cfg()) == ""  # the tiny model: nothing published
    assert set(PUBLISHED) == {"0.6B", "1.7B", "4B", "8B", "14B", "32B"}  # every size the kit trains
