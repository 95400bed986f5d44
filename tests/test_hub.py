"""Downloads through the real modelscope client from a fake ModelScope on 127.0.0.1 (nothing in the path mocked)."""

import os

import pytest

from kit.hub import (
    ChecksumMismatch,
    DiskFull,
    HubError,
    NetworkUnreachable,
    RepoNotFound,
    catalog_table,
    download_model,
    model_folder,
    resolve_repo,
)
from tests.fake_modelscope import FakeModelScope, FakeRepo

REPO = "unsloth/Qwen3-0.6B-unsloth-bnb-4bit"
BIG = "model-00002-of-00002.safetensors"  # a larger file, to cut and resume


@pytest.fixture
def hub(tiny_dir, monkeypatch, tmp_path):
    files = {p.name: p.read_bytes() for p in tiny_dir.iterdir() if p.is_file()}
    files[BIG] = os.urandom(3_000_000)
    fake = FakeModelScope({REPO: FakeRepo(files)}).start()
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", fake.endpoint)
    monkeypatch.setenv("QWEN3_KIT_CACHE", str(tmp_path / "cache"))
    yield fake
    fake.stop()


def test_complete_download_loads_and_second_call_makes_no_request(hub):
    from transformers import AutoConfig, AutoTokenizer

    first = download_model("Qwen3-0.6B")
    assert not first.cached and first.repo_id == REPO
    for name, data in hub.repos[REPO].files.items():
        assert (first.path / name).read_bytes() == data
    assert AutoTokenizer.from_pretrained(first.path).apply_chat_template([{"role": "user", "content": "hi"}],
                                                                        tokenize=False)
    assert AutoConfig.from_pretrained(first.path).model_type == "qwen3"
    seen = len(hub.requests)
    again = download_model("Qwen3-0.6B")
    assert again.cached and again.path == first.path
    assert len(hub.requests) == seen, "a verified copy must be found without any request"


def test_an_unreadable_manifest_is_treated_as_absent(hub):
    first = download_model("Qwen3-0.6B")
    (manifest,) = first.path.glob(".kit-complete-*.json")
    manifest.write_text('{"files": [')  # cut short (a full disk, a kill mid-write)
    again = download_model("Qwen3-0.6B")
    assert not again.cached and again.path == first.path  # verified afresh, not a JSONDecodeError
    assert download_model("Qwen3-0.6B").cached


def test_a_revision_is_its_own_copy(hub):
    first = download_model("Qwen3-0.6B")
    seen = len(hub.requests)
    pinned = download_model("Qwen3-0.6B", revision="v1.1")
    assert not pinned.cached and pinned.path != first.path and len(hub.requests) > seen
    assert any("Revision=v1.1" in r for r in hub.requests[seen:])
    assert download_model("Qwen3-0.6B", revision="v1.1").cached and download_model("Qwen3-0.6B").cached


def test_network_errors_are_recognised_by_their_class_not_their_text():
    import httpx
    import requests

    from kit.hub import explain_error

    for error in (httpx.ConnectError("[Errno 101] Network is unreachable"), requests.ConnectionError("x"),
                  RuntimeError("wrapped")):
        if isinstance(error, RuntimeError):
            try:
                try:
                    raise httpx.ConnectTimeout("timed out")
                except httpx.ConnectTimeout as inner:
                    raise RuntimeError("client failed") from inner
            except RuntimeError as wrapped:
                error = wrapped
        explained = explain_error(error, "Qwen/Qwen3-8B", "huggingface", None)
        assert isinstance(explained, NetworkUnreachable) and "HF_ENDPOINT" in str(explained)


def test_resume_after_the_server_cuts_a_transfer(hub):
    hub.cut_after[BIG] = 1_000_000
    result = download_model("Qwen3-0.6B")
    assert (result.path / BIG).read_bytes() == hub.repos[REPO].files[BIG]
    resumed = [r for path, r in hub.ranges if path == BIG]
    assert resumed and all(not r.startswith("bytes=0-") for r in resumed), "the cut file was restarted, not resumed"


def test_corrupted_file_is_detected_and_removed(hub):
    hub.corrupt.add(BIG)
    with pytest.raises(ChecksumMismatch, match=f"{BIG} arrived corrupt .* removed; run the download again"):
        download_model("Qwen3-0.6B")
    assert not (model_folder(REPO) / BIG).exists()
    hub.corrupt.clear()
    assert (download_model("Qwen3-0.6B").path / BIG).read_bytes() == hub.repos[REPO].files[BIG]


def test_damaged_local_copy_is_fetched_again(hub):
    first = download_model("Qwen3-0.6B")
    with open(first.path / BIG, "r+b") as f:
        f.truncate(1000)
    again = download_model("Qwen3-0.6B")
    assert not again.cached and (again.path / BIG).read_bytes() == hub.repos[REPO].files[BIG]


def test_missing_repo_suggests_close_matches(hub):
    with pytest.raises(RepoNotFound, match=r"'unsloth/Qwen3-14B-unsloth-bnb4bit' was not found on ModelScope\. "
                                           r"Did you mean unsloth/Qwen3-14B-unsloth-bnb-4bit"):
        download_model("unsloth/Qwen3-14B-unsloth-bnb4bit")


def test_unknown_name_is_resolved_offline_with_suggestions():
    with pytest.raises(RepoNotFound, match=r"unknown model 'Qwen3-15B'; did you mean .*Qwen3-14B"):
        resolve_repo("Qwen3-15B")


def test_unreachable_endpoint_names_the_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.setenv("QWEN3_KIT_CACHE", str(tmp_path))
    with pytest.raises(NetworkUnreachable, match=r"cannot reach ModelScope .*source /etc/network_turbo"):
        download_model("Qwen3-0.6B")


def test_refuses_when_the_disk_cannot_hold_it(hub):
    hub.repos[REPO].listed_sizes[BIG] = 10**15  # a petabyte
    with pytest.raises(DiskFull, match=r"needs 1000000\.0 GB but only .* GB is free"):
        download_model("Qwen3-0.6B")
    assert not [r for r in hub.requests if "FilePath=" in r], "nothing may be downloaded before the space check"


def test_patterns_download_part_of_a_repo(hub):
    from transformers import AutoTokenizer

    part = download_model("Qwen3-0.6B", allow_patterns=["*.json", "*.jinja"])
    names = sorted(p.name for p in part.path.iterdir() if not p.name.startswith("."))
    assert "model.safetensors" not in names and "tokenizer.json" in names
    AutoTokenizer.from_pretrained(part.path)


def test_catalog_variants():
    assert resolve_repo("Qwen3-14B") == "unsloth/Qwen3-14B-unsloth-bnb-4bit"
    assert resolve_repo("qwen3-8b", "bnb_4bit") == "unsloth/Qwen3-8B-bnb-4bit"
    assert resolve_repo("32B", "base_16bit") == "Qwen/Qwen3-32B"
    assert resolve_repo("Qwen3-30B-A3B", "base_16bit") == "Qwen/Qwen3-30B-A3B"
    with pytest.raises(RepoNotFound, match="Qwen3-30B-A3B is a MoE whose experts bitsandbytes does not quantize"):
        resolve_repo("Qwen3-30B-A3B")
    with pytest.raises(RepoNotFound, match="Qwen3-4B-Instruct-2507 has no thinking switch"):
        resolve_repo("Qwen3-4B-Instruct-2507")
    table = catalog_table()
    assert all(f"Qwen/Qwen3-{s}" in table for s in ["0.6B", "1.7B", "4B", "8B", "14B", "32B", "30B-A3B"])


def test_sixteen_bit_training_resolves_the_16bit_base(hub):
    from kit.config.schema import ModelConfig
    from kit.hub import resolve_model

    hub.repos["Qwen/Qwen3-0.6B"] = hub.repos[REPO]
    folder = resolve_model(ModelConfig(name="Qwen3-0.6B", load_in_4bit=False))
    assert folder == model_folder("Qwen/Qwen3-0.6B")
    assert resolve_model(ModelConfig(name="Qwen3-0.6B")) == model_folder(REPO)
    # An export asks for the 16-bit base of whatever repo the run trained on.
    assert resolve_model(ModelConfig(name=REPO), "base_16bit") == model_folder("Qwen/Qwen3-0.6B")


def test_a_4bit_folder_is_not_a_base_to_merge_into(tmp_path):
    from kit.config.schema import ModelConfig
    from kit.hub import resolve_model

    (tmp_path / "config.json").write_text('{"quantization_config": {"load_in_4bit": true}}')
    assert resolve_model(ModelConfig(name=str(tmp_path))) == tmp_path  # fine to train on
    with pytest.raises(HubError, match="holds 4-bit weights; merging into dequantized 4-bit weights loses accuracy"):
        resolve_model(ModelConfig(name=str(tmp_path)), "base_16bit")
