import re
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


@pytest.mark.parametrize("override,said", [
    ("data.sources.share=0.5", "'data.sources.share': data.sources is a list of 3, so 'share' must be an index (0 to "
                               "2); or give the whole list, e.g. data.sources=[{path: my.jsonl}]."),
    ("data.sources.3.share=0.5", "'data.sources.3.share': data.sources is a list of 3, so '3' must be an index"),
    ("data.chat_ratio.x=1", "'data.chat_ratio.x': data.chat_ratio is 0.25, not a section with keys."),
])
def test_a_setting_through_a_list_takes_an_index_and_through_a_value_is_refused(override, said):
    own = load_config(ROOT / "configs/own-data.yaml", ["data.sources.2.share=0.1"])
    assert [s.share for s in own.data.sources] == [None, None, 0.1] and own.data.sources[2].format == "alpaca"
    with pytest.raises(ConfigError, match=re.escape(said)):  # these were dropped without a word
        load_config(ROOT / "configs/own-data.yaml", [override])


def test_unknown_key_names_the_nearest_valid_one():
    with pytest.raises(ConfigError, match=r"unknown key 'data.chat_ratoi'.*Did you mean 'data.chat_ratio'"):
        load_config(None, ["data.chat_ratoi=0.3"])
    with pytest.raises(ConfigError, match=r"unknown key 'data.share': here it is data.reasoning.share or "
                                          r"data.chat.share or data.sources.<i>.share."):  # a share indented too little
        load_config(None, ["data.share=0.1"])


def test_unknown_key_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learnig_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"(?s)c.yaml.*train.learnig_rate.*train.learning_rate"):
        load_config(path)


def test_validation_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/smoke.yaml", ["data.chat_ratio=1.5", "data.max_rows=-1",
                                                  "data.chat.path=data/missing.jsonl", "train.backend=gpu"])
    message = str(e.value)
    assert "data.chat_ratio is 1.5; it must be in [0, 1] (share of chat in the mix)." in message
    assert "data.max_rows is -1; it must be at least 0" in message
    assert f"data.chat.path 'data/missing.jsonl' (relative to {ROOT}) matches no file." in message
    assert "train.backend is 'gpu'" in message


def test_eval_settings_are_validated_together():
    with pytest.raises(ConfigError) as e:
        load_config(ROOT / "configs/smoke.yaml", ["eval.math=math5000", "eval.batch_size=0",
                                                  "eval.endpoint=localhost:8000", "data.reasoning.heldout=1",
                                                  "eval.adapter=latest"])
    message = str(e.value)
    assert "eval.math 'math5000' is neither a file nor one of heldout, math500, gsm8k, aime24, aime25." in message
    assert "eval.batch_size is 0; it must be at least 1 (prompts generated together" in message
    assert "eval.endpoint 'localhost:8000' is not an http(s) URL" in message
    assert "data.reasoning.heldout is 1.0; it must be in [0, 1) (share of problems" in message
    assert "eval.adapter 'latest' is not a folder; use final, newest or an adapter folder." in message


def test_every_unknown_key_and_bad_type_is_reported_at_once(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learnig_rate: 0.1\n  max_steps: many\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["lora.r=big", "train.max_steps=x", "lora.rank=8", "data.chat_ratio=2"])
    message = str(e.value)
    for problem in ("'lora.r' must be a number, got 'big'", "'train.max_steps' must be a number, got 'x'",
                    "unknown key 'lora.rank'", "unknown key 'train.learnig_rate'", "data.chat_ratio is 2.0"):
        assert problem in message


def test_values_libraries_would_refuse_are_caught_before_any_work():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["train.optim=adam", "train.lr_scheduler_type=cosine_warm", "train.resume=runs/nowhere",
                           "lora.target_modules=[q_proj,qkv_proj]"])
    message = str(e.value)
    assert "train.optim is 'adam'; use auto" in message
    assert "train.lr_scheduler_type is 'cosine_warm'; use one of" in message and "'cosine'" in message
    assert f"train.resume is 'runs/nowhere' (relative to {ROOT}); use auto" in message
    assert "lora.target_modules is ['q_proj', 'qkv_proj']; use all-linear or any of the Qwen3 projections" in message
    cfg = load_config(None, ["train.optim=paged_adamw_8bit", "train.lr_scheduler_type=cosine",
                             "lora.target_modules=all-linear"])
    assert cfg.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def test_library_names_are_read_from_transformers_own_enums():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    from kit.config.checks import enum_values

    assert enum_values("training_args.py", "OptimizerNames") == {o.value for o in OptimizerNames}
    assert enum_values("trainer_utils.py", "SchedulerType") == {s.value for s in SchedulerType}


def test_an_empty_section_takes_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\nlora:\n")
    assert load_config(path, ["train.max_steps=5"]).train.max_steps == 5


def test_a_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  max_steps: [1, 2\n  lr: 3\n")
    with pytest.raises(ConfigError, match=r"c.yaml' line 3, column \d+: .*; fix the YAML there"):
        load_config(path)


def test_wandb_online_without_a_key_is_refused_before_any_work(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    with pytest.raises(ConfigError, match="tracking.wandb is online but no W&B API key is set: export WANDB_API_KEY"):
        load_config(None, ["tracking.wandb=online"])
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert load_config(None, ["tracking.wandb=online"]).tracking.wandb == "online"


def test_wandb_online_takes_the_key_wandb_login_saved(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("NETRC", raising=False)
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    assert load_config(None, ["tracking.wandb=online"]).tracking.wandb == "online"
    (tmp_path / ".netrc").write_text("machine elsewhere.org login user password x\n")
    with pytest.raises(ConfigError, match="tracking.wandb is online but no W&B API key is set"):
        load_config(None, ["tracking.wandb=online"])


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


def test_kit_names_functions_after_their_modules_are_imported():
    """A notebook cell `kit.train(cfg)` (or `kit.grpo(cfg)`) runs again to resume, after the modules behind them were
    imported: no module of the package shares a public function's name."""
    import kit
    import kit.training.reinforce  # noqa: F401  (imports kit.training.sft and kit.evaluation.scores too)

    assert callable(kit.train) and kit.train.__module__ == "kit.training.sft"
    assert callable(kit.grpo) and callable(kit.evaluate)


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


def test_a_model_the_kit_does_not_train_is_refused_before_any_work():
    with pytest.raises(ConfigError, match="model.name is 'unsloth/Qwen3-4B-Instruct-2507': Qwen3-4B-Instruct-2507 has "
                                          "no thinking switch .* train the hybrid Qwen3-4B"):
        load_config(None, ["model.name=unsloth/Qwen3-4B-Instruct-2507"])
    with pytest.raises(ConfigError, match="model.name 'Qwen3-14' is no Qwen3 model the kit knows; did you mean "
                                          "Qwen3-14B"):
        load_config(None, ["model.name=Qwen3-14"])
    assert load_config(None, ["model.name=someone/my-qwen3-8b-sft"]).model.name == "someone/my-qwen3-8b-sft"


@pytest.mark.parametrize("section", ["lora: 16", "train: fast", "train: []", "train: 0"])
def test_a_section_that_is_not_a_mapping_is_reported_even_with_one_of_its_keys_on_the_command_line(tmp_path,
                                                                                                  section):
    path = tmp_path / "c.yaml"
    path.write_text(f"model:\n  name: tiny\n{section}\n")
    name = section.split(":")[0]
    with pytest.raises(ConfigError, match=f"'{name}' must be a mapping of its keys"):
        load_config(path, [f"{name}.{'r=8' if name == 'lora' else 'max_steps=3'}"])


EXTRA = "data/custom_messages.jsonl"  # a file of the repository's: a source that exists
PROBLEMS = [  # (overrides, the sentence the user gets)
    (["train.max_steps=0", "train.num_train_epochs=0"],
     "train.max_steps and train.num_train_epochs are both 0; set one of them."),
    (["model.source=local", "model.name=/nowhere/qwen3"], "model.name '/nowhere/qwen3' is not a folder, and "
                                                           "model.source is local."),
    (["model.adapter=/nowhere/adapter"], "model.adapter '/nowhere/adapter' is not a folder."),
    (["eval.instructions=/nowhere/if.jsonl"], "eval.instructions '/nowhere/if.jsonl' is not a file (\"\" skips"),
    (["eval.base_endpoint=localhost:8000"], "eval.base_endpoint 'localhost:8000' is not an http(s) URL"),
    (["data.chat.share=0.5"], "data.chat.share is set by data.chat_ratio; set that instead."),
    (["data.reasoning.path=", "data.chat.path="], "the mix has no source: give data.reasoning.path, data.chat.path"),
    (["data.reasoning.min_pass_rate=0.8", "data.reasoning.max_pass_rate=0.5"],
     "data.reasoning: min_pass_rate 0.8 is above max_pass_rate 0.5."),
    ([f"data.sources=[{{path: {EXTRA}, share: 0.8}}]", "data.chat_ratio=0.2"],
     "the shares of the sources add up to 1: with sources that give all their rows (reasoning) they must stay "
     "below 1, else add up to 1."),
    ([f"data.sources=[{{path: {EXTRA}, share: 0.5}}]", "data.chat_ratio=1"],
     "the shares of the sources add up to 1.5; they must add up to 1."),
    (["data.sources=[{path: data/none-such.jsonl}]"], "data.sources[0].path 'data/none-such.jsonl' (relative to"),
    ([f"data.sources=[{{path: {EXTRA}}}, {{path: {EXTRA}, share: 1, max_rows: -1}}]"],
     "data.sources[1].share is 1.0; it must be in (0, 1) (this source's share of the mix"),
    ([f"data.sources=[{{path: {EXTRA}, share: 0}}]"], "data.sources[0].share is 0.0; it must be in (0, 1)"),
    (["lora.target_modules=q_proj,v_proj"], "lora.target_modules is ['q_proj,v_proj']; a list is written "
                                            "lora.target_modules=[q_proj,v_proj]."),
    (["export.formats=[]"], "export.formats is empty; give one or more of adapter, merged_16bit, merged_4bit_forced."),
    (["train.output_dir="], "train.output_dir is empty; name the folder runs go in (e.g. runs)."),
    (["model.cache_dir=README.md"], "model.cache_dir 'README.md' (relative to"),
    (["grpo.correct_weight=0", "grpo.format_weight=0", "grpo.length_weight=0"],
     "grpo.correct_weight, format_weight and length_weight are all 0: there is nothing to reward."),

    (["grpo.prompts_per_step=3", "grpo.num_generations=2", "grpo.per_device_train_batch_size=4"],
     "grpo.per_device_train_batch_size is 4; it must divide the 6 completions of a step"),
]


@pytest.mark.parametrize("overrides,said", PROBLEMS, ids=[p[1].split(" ")[0] for p in PROBLEMS])
def test_each_problem_is_one_sentence_naming_the_key_and_the_fix(overrides, said):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert said in str(e.value)
    assert str(e.value).count(" is ") <= 3 + said.count(" is "), str(e.value)  # this problem, not a pile of others


@pytest.mark.parametrize("overrides", [
    ["train.max_steps=0", "train.num_train_epochs=1"], ["train.max_steps=5", "train.num_train_epochs=0"],
    ["data.reasoning.min_pass_rate=0.5", "data.reasoning.max_pass_rate=0.5"],
    [f"data.sources=[{{path: {EXTRA}, share: 0.5}}]", "data.chat_ratio=0.4"],  # 0.9 beside the whole reasoning
    [f"data.sources=[{{path: {EXTRA}}}]", "data.sources.0.share=0.5"],  # an index into the list
    [f"data.sources=[{{path: {EXTRA}, share: 0.25}}]", "data.chat_ratio=0.75", "data.reasoning.path="],  # 1 in all
    ["data.chat_ratio=1", "data.reasoning.path="], ["data.chat_ratio=0", "data.chat.path="],
    [f"data.sources=[{{path: {EXTRA}, share: 0.6}}, {{path: {EXTRA}, share: 0.4}}]", "data.chat_ratio=1",
     "data.chat.path="],
    ["grpo.prompts_per_step=3", "grpo.num_generations=2", "grpo.per_device_train_batch_size=6"],
    ["grpo.correct_weight=0", "grpo.format_weight=0",
                                             "grpo.length_weight=0.1"],
    ["grpo.correct_weight=0.5", "grpo.format_weight=0.5", "grpo.length_weight=0"],  # any weight set rewards
    ["grpo.correct_weight=0.1", "grpo.format_weight=0", "grpo.length_weight=0.1"],
    ["model.name=tiny", "model.source=local"], ["eval.base_endpoint=https://example.org/v1"], ["model.adapter=data"],
    ["model.name=Qwen3-8B", "model.source=modelscope"],
    ["model.name=./a-folder-not-yet-made", "model.source=huggingface"],
])
def test_settings_the_docs_allow_load(overrides):
    load_config(None, overrides)
