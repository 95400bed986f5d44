import os
import subprocess
import sys

import pytest

from kit.files import atomic_folder
from tests.conftest import ROOT


def test_atomic_folder_appears_whole_and_keeps_live_builds(tmp_path):
    target = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / f".out.tmp-{dead.stdout.strip()}").mkdir()  # left by a process that was killed
    (tmp_path / f".out.tmp-{os.getppid()}").mkdir()  # a live process still building
    (tmp_path / f".out.old-{dead.stdout.strip()}").mkdir()  # a previous version a killed replacement moved aside
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("interrupted")
    assert not target.exists()
    with atomic_folder(target) as tmp:
        (tmp / "whole").write_text("x")
    assert [p.name for p in target.iterdir()] == ["whole"]
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "out")
    assert leftovers == [f".out.tmp-{os.getppid()}"]


def test_a_signal_the_instant_the_temporary_folder_exists_leaves_nothing(tmp_path, monkeypatch):
    """A signal's handler runs between two bytecodes: here the one right after mkdir returned, which CI once hit
    (export stopped by SIGTERM left .adapter.tmp-<pid>)."""
    from pathlib import Path

    make = Path.mkdir

    def mkdir_then_signal(self, *args, **kwargs):
        make(self, *args, **kwargs)
        if ".tmp-" in self.name:
            raise KeyboardInterrupt

    monkeypatch.setattr(Path, "mkdir", mkdir_then_signal)
    with pytest.raises(KeyboardInterrupt), atomic_folder(tmp_path / "out"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_run_state_files_are_read_back_whole_or_named(tmp_path, capsys):
    from kit.errors import KitError
    from kit.files import append_line, read_cache, read_json, read_jsonl

    state = tmp_path / "state.json"
    state.write_text('{"a": 1, "b"')  # cut short
    with pytest.raises(KitError, match=r"state.json is not the JSON the kit wrote \(line 1\): it was cut short or "
                                       r"edited; do this"):
        read_json(state, "do this")
    state.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(KitError, match="state.json is not the JSON the kit wrote: it was cut"):
        read_json(state, "do this")
    with pytest.raises(KitError, match="absent.json is missing; do this"):
        read_json(tmp_path / "absent.json", "do this")
    assert read_cache(state) is None and "state.json is damaged (cut short or edited): making it again" in \
        capsys.readouterr().out  # what the kit can make again is made again
    log = tmp_path / "metrics.jsonl"
    append_line(log, {"step": 1})
    append_line(log, {"step": 2})
    with open(log, "a") as f:
        f.write('{"step": 3, "lo')  # a power cut during the third append
    assert read_jsonl(log, "fix") == [{"step": 1}, {"step": 2}]
    log.write_text('{"step": 1}\n{bad\n{"step": 2}\n')
    with pytest.raises(KitError, match="metrics.jsonl line 2 is not the JSON the kit wrote: .*; fix"):
        read_jsonl(log, "fix")


def test_library_words_for_a_full_disk_are_recognised():
    import errno

    from kit.files import disk_full

    assert disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
                                  "file data/3: file write failed"))  # torch.save
    assert disk_full(Exception('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
                               'space left on device" })'))  # safetensors
    assert not disk_full(OSError(errno.ENOENT, "No such file or directory"))


def _on_a_full_disk(folder, size: str, *command: str):
    """`command` with `folder` on a tmpfs of `size` (a mount namespace of its own: root, or unprivileged user
    namespaces, needed), as a full disk is met."""
    folder.mkdir(parents=True, exist_ok=True)
    script = f"mount -t tmpfs -o size={size} tmpfs {folder} && " + " ".join(f"'{c}'" for c in command)
    result = subprocess.run(["unshare", "--mount", "--map-root-user", "sh", "-c", script], capture_output=True,
                            text=True, timeout=600, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
    if "mount:" in result.stderr or "unshare:" in result.stderr:
        pytest.skip(reason=f"needs a private tmpfs (unshare --mount: root or user namespaces): {result.stderr[:150]}")
    return result


def test_a_full_disk_leaves_no_temporary_and_is_named(tmp_path):
    code = """
from pathlib import Path
from kit.errors import KitError
from kit.files import write_atomic, writing_into
folder = Path(__import__("sys").argv[1])
write_atomic(folder / "state.json", "whole")
try:
    with writing_into(folder):
        write_atomic(folder / "state.json", "x" * 200_000)
except KitError as e:
    print(e)
print(sorted(p.name for p in folder.iterdir()), (folder / "state.json").read_text())
"""
    full = tmp_path / "full"
    result = _on_a_full_disk(full, "64k", sys.executable, "-c", code, str(full))
    assert f"the disk holding {full} is full (0.00 GB free): free space there" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("['state.json'] whole")  # the old content, no temporary beside it


@pytest.mark.parametrize("script,settings,size", [
    ("scripts/export.py", ["export.out_dir={full}"], "2m"),
    ("scripts/train.py", ["configs/smoke.yaml", "train.output_dir={full}", "train.max_steps=4", "train.save_steps=2"],
     "600k"),
])
def test_a_full_disk_ends_in_one_line_naming_the_folder(run_copy, tmp_path, script, settings, size):
    run, full = run_copy(checkpoints=False), tmp_path / "full"
    args = ["--run", str(run)] if script == "scripts/export.py" else []
    result = _on_a_full_disk(full, size, sys.executable, script, *args, *[s.format(full=full) for s in settings])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"the disk holding {full}" in result.stderr.strip().splitlines()[-1]
    assert "is full" in result.stderr
