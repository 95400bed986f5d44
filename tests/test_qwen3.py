import pytest

from kit.models.profiles import FAMILY, TRAINABLE, find


@pytest.mark.parametrize("size", TRAINABLE)
def test_shapes_reproduce_the_published_sizes(size):
    model = FAMILY[size]
    assert model.params() == pytest.approx(model.params_b * 1e9, rel=0.03)


def test_every_way_users_name_a_model_finds_it():
    assert find("unsloth/Qwen3-14B-unsloth-bnb-4bit") is FAMILY["14B"]
    assert find("/root/autodl-tmp/qwen3-kit/models/modelscope/Qwen--Qwen3-0.6B") is FAMILY["0.6B"]
    assert find("qwen3-1.7b") is FAMILY["1.7B"] and find("14b") is FAMILY["14B"]
    assert find("Qwen3-4B") is FAMILY["4B"] and find("Qwen3-14B") is FAMILY["14B"]  # 4B inside 14B is not 4B
    assert find("Qwen/Qwen3-30B-A3B") is FAMILY["30B-A3B"]
    assert find("tiny") is None and find("Qwen2.5-7B") is None


def test_repos_of_each_variant():
    model = FAMILY["8B"]
    assert (model.repo("dynamic_4bit"), model.repo("bnb_4bit"), model.repo("base_16bit")) == (
        "unsloth/Qwen3-8B-unsloth-bnb-4bit", "unsloth/Qwen3-8B-bnb-4bit", "Qwen/Qwen3-8B")
    assert "30B-A3B" not in TRAINABLE
