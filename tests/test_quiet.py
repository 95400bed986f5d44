"""Only the exact noisy lines are dropped; ModelScope's retries are shown when, and only when, the download fails."""

import logging

import pytest

from kit.quiet import install, retries_held_back


class Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def test_the_listed_lines_are_dropped_and_nothing_else():
    install()
    install()  # idempotent
    pytree = logging.getLogger("torch.utils._pytree")
    lines = Lines()
    pytree.addHandler(lines)
    try:
        pytree.warning("%s is an Enum subclass and is now natively supported by torch.compile as an opaque value type. "
                       "Calling register_constant() on Enum subclasses is deprecated.", "<enum 'KernelPreference'>")
        pytree.warning("something else about %s", "pytrees")
        pytree.error("%s is an Enum subclass", "an error with a similar start")
    finally:
        pytree.removeHandler(lines)
    assert lines.lines == ["something else about pytrees", "an error with a similar start is an Enum subclass"]


def test_modelscope_retries_are_shown_only_when_the_download_fails():
    from modelscope_hub.utils.logger import get_logger

    lines = Lines()
    get_logger().addHandler(lines)  # beside the SDK's own handler, which its child loggers propagate to
    download = get_logger("download")
    try:
        with retries_held_back():
            download.warning("Download failed for %s (%s), retrying in %ss", "model.safetensors", "ReadTimeout", 1)
            download.warning("Ranged requests are not honoured for %s", "x")
        assert lines.lines == ["Ranged requests are not honoured for x"]
        with pytest.raises(ConnectionError), retries_held_back():
            get_logger("legacy_api").warning("Repo %s: listing failed (%s), retry in %ss (%d/%d)", "a/b",
                                             "NetworkError", 1, 1, 4)
            raise ConnectionError("gave up")
        assert lines.lines[-1] == "Repo a/b: listing failed (NetworkError), retry in 1s (1/4)"
    finally:
        get_logger().removeHandler(lines)


def test_a_bad_row_is_one_line_with_no_progress_bar_before_it(tmp_path):
    import json

    from tests.conftest import run_script

    bad = tmp_path / "chat.jsonl"
    bad.write_text(json.dumps({"conversations": [{"from": "bot", "value": "hello"}]}) + "\n")
    result = run_script("scripts/prepare_data.py", "configs/smoke.yaml", f"data.chat.path={bad}", check=False)
    assert result.returncode == 1 and "tokenizing" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "unknown role 'bot'" in lines[0], result.stderr
