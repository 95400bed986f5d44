import pytest

from kit.models.profiles import PROFILES, TRAINABLE, find, nearest


def profile(size):
    return PROFILES[f"Qwen3-{size}"]


@pytest.mark.parametrize("size", TRAINABLE)
def test_shapes_reproduce_the_published_sizes(size):
    model = profile(size)
    assert model.params() == pytest.approx(model.params_b * 1e9, rel=0.03)


def test_every_way_users_name_a_model_finds_it():
    assert find("unsloth/Qwen3-14B-unsloth-bnb-4bit") is profile("14B")
    assert find("/root/autodl-tmp/qwen3-kit/models/modelscope/Qwen--Qwen3-0.6B") is profile("0.6B")
    assert find("qwen3-1.7b") is profile("1.7B") and find("14b") is profile("14B")
    assert find("Qwen3-4B") is profile("4B") and find("Qwen3-14B") is profile("14B")  # 4B inside 14B is not 4B
    assert find("Qwen/Qwen3-30B-A3B") is profile("30B-A3B")
    assert find("tiny") is None and find("Qwen2.5-7B") is None


def test_a_2507_model_is_never_taken_for_the_hybrid_one():
    for name in ("Qwen3-4B-Instruct-2507", "unsloth/Qwen3-4B-Instruct-2507", "Qwen/Qwen3-4B-Thinking-2507"):
        found = find(name)
        assert found is not None and found is not profile("4B") and found.refused
        assert "enable_thinking" in found.refused and "Qwen3-4B" in found.refused
    assert find("unsloth/Qwen3-4B-Instruct-2507-unsloth-bnb-4bit").template == "instruct"
    assert nearest("Qwen3-14") == ["Qwen3-14B", *nearest("Qwen3-14")[1:]]


def test_repos_of_each_variant():
    model = profile("8B")
    assert (model.repo("dynamic_4bit"), model.repo("bnb_4bit"), model.repo("base_16bit")) == (
        "unsloth/Qwen3-8B-unsloth-bnb-4bit", "unsloth/Qwen3-8B-bnb-4bit", "Qwen/Qwen3-8B")
    assert "30B-A3B" not in TRAINABLE


def test_a_folder_whose_template_has_no_thinking_switch_is_refused(tmp_path):
    from kit.training.backends import BackendError, check_thinking_switch

    (tmp_path / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    with pytest.raises(BackendError, match="its chat template has no enable_thinking switch"):
        check_thinking_switch(tmp_path)
    (tmp_path / "chat_template.jinja").write_text("{%- if enable_thinking is defined %}")
    check_thinking_switch(tmp_path)
