import os
import subprocess
import sys

import pytest

from kit.files import atomic_folder


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
