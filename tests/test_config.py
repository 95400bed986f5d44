from pathlib import Path

import pytest
import yaml

from kit.config import ConfigError, load_config, save_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    load_config(path)


def test_overrides_are_typed_and_nested():
    cfg = load_config(ROOT / "configs/smoke.yaml", ["data.chat_ratio=0.3", "lora.target_modules=[q_proj,v_proj]",
                                                    "data.reasoning.max_rows=10", "train.learning_rate=1e-4"])
    assert cfg.data.chat_ratio == 0.3 and cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.data.reasoning.max_rows == 10 and cfg.data.reasoning.format == "openmath"  # siblings keep their values
    assert cfg.train.learning_rate == 1e-4


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown key 'data.chat_ratoi'.*Did you mean 'data.chat_ratio'"):
        load_config(None, ["data.chat_ratoi=0.3"])


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learnig_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*train.learnig_rate.*train.learning_rate"):
        load_config(path)


def test_validation_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/smoke.yaml", ["data.chat_ratio=1.5", "data.max_rows=-1",
                                                  "data.chat.path=data/missing.jsonl", "train.backend=gpu"])
    message = str(e.value)
    assert "data.chat_ratio is 1.5; it is the share of chat in the mix, in [0, 1]." in message
    assert "data.max_rows is -1; it cannot be negative" in message
    assert "data.chat.path 'data/missing.jsonl' matches no file." in message
    assert "train.backend is 'gpu'" in message


def test_eval_settings_are_validated_together():
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/smoke.yaml", ["eval.math=math5000", "eval.batch_size=0",
                                                  "eval.endpoint=localhost:8000", "data.reasoning.heldout=1",
                                                  "eval.adapter=latest"])
    message = str(e.value)
    assert "eval.math 'math5000' is neither a file nor one of heldout, math500, gsm8k, aime24, aime25." in message
    assert "eval.batch_size is 0; it must be at least 1." in message
    assert "eval.endpoint 'localhost:8000' is not an http(s) URL" in message
    assert "data.reasoning.heldout is 1.0; it is the share of problems kept for eval, in [0, 1)." in message
    assert "eval.adapter 'latest' is not a folder; use final, newest or an adapter folder." in message


def test_bad_value_type_is_one_sentence():
    with pytest.raises(ConfigError, match="'lora.r' must be a number, got 'big'"):
        load_config(None, ["lora.r=big"])


def test_missing_config_file():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        load_config("nope.yaml")


def test_saved_config_never_holds_secrets(tmp_path):
    cfg = load_config(ROOT / "configs/smoke.yaml", ["tracking.api_key=sekret-wandb-key", "model.token=hf_sekret"])
    path = save_config(cfg, tmp_path / "config.yaml")
    text = path.read_text()
    assert "sekret" not in text
    assert load_config(path).data.chat_ratio == cfg.data.chat_ratio  # the saved file loads back
    assert yaml.safe_load(text)["tracking"]["project"] == "qwen3-kit"


def test_importing_kit_keeps_transformers_out():
    """Unsloth must be imported before transformers; `import kit` and the config must not import it first."""
    import subprocess
    import sys

    code = ("import sys, kit; kit.load_config; kit.estimate; "
            "print('transformers' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_scripts_report_user_errors_in_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "MODELSCOPE_ENDPOINT": "http://127.0.0.1:9", "QWEN3_KIT_CACHE": str(tmp_path)}
    cases = [
        (["scripts/train.py", "--config", "configs/smoke.yaml", "data.chat_ratoi=0.3"],
         "Did you mean 'data.chat_ratio'"),
        (["scripts/download.py", "Qwen3-15B"], "unknown model 'Qwen3-15B'; did you mean"),
        (["scripts/download.py", "Qwen3-0.6B"], "cannot reach ModelScope"),
    ]
    for args, message in cases:
        result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
        assert result.returncode == 1, result.stderr[-2000:]
        assert "Traceback" not in result.stderr and result.stderr.strip().splitlines()[-1].startswith("error: ")
        assert message in result.stderr
