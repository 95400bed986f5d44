"""Files and folders that appear whole or not at all, run-state files read back with one sentence when they are not
what the kit wrote, and a full disk named by its folder."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kit.errors import KitError


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside `target` that replaces it in one rename when the block completes: a failed
    block leaves `target` as it was. Leftovers of killed processes are removed; those of live ones are left alone."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary folder of a killed build, or the previous version a killed replacement had moved aside.
    for stale in [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.old-*")]:
        pid = stale.name.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()  # inside the try: a signal handled the instant after it still removes the folder
        yield tmp
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    """Write a text file in one rename, synced first: a reader finds the old content or the new, never a truncated
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: Path, record: dict) -> None:
    """One JSON line appended and synced: a power cut can only cut the last line, which `read_jsonl` then drops."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_json(path: Path, fix: str):
    """A JSON file the kit wrote; missing or damaged raises KitError naming it and `fix`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        what = f"{path} is missing"
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        where = f" (line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
        what = f"{path} is not the JSON the kit wrote{where}: it was cut short or edited"
    raise KitError(f"{what}; {fix}" if fix else what)


def read_cache(path: Path):
    """A JSON file the kit can make again: None when absent or damaged (said), so it is remade, not trusted."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:  # not JSON, or not UTF-8
        print(f"note: {path} is damaged (cut short or edited): making it again.")
        return None


def read_jsonl(path: Path, fix: str) -> list[dict]:
    """The records of a JSON-lines file; a cut-off last line is dropped, any other bad line raises KitError with
    `fix`."""
    data = Path(path).read_bytes() if Path(path).is_file() else b""
    lines, records = data.split(b"\n"), []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if number == len(lines):  # no newline after it: the append was cut
                break
            raise KitError(f"{path} line {number} is not the JSON the kit wrote: it was edited or damaged; "
                           f"{fix}") from None
    return records


def disk_full(error: BaseException) -> bool:
    """Whether `error` is a full disk, however the library that wrote words it (torch, safetensors, pyarrow)."""
    text = str(error)
    return (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        any(s in text for s in ("No space left on device", "StorageFull", "file write failed"))


def free_gb(folder: Path) -> float:
    """Free space, in GB, on the disk holding `folder` (its nearest existing parent)."""
    folder = Path(folder).resolve()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free / 1e9


@contextmanager
def writing_into(folder: Path, needed_gb: float | None = None) -> Iterator[None]:
    """For the block, which writes into `folder`: a full disk becomes one KitError naming the folder, the space free
    and (checked before the block starts) the space `needed`."""
    def full() -> KitError:
        need = f"; this needs about {needed_gb:.2f} GB" if needed_gb else ""
        return KitError(f"the disk holding {folder} is full ({free_gb(folder):.2f} GB free{need}): free space there or "
                        "point the output at a larger disk, then run the same command again.")

    if needed_gb and free_gb(folder) < needed_gb:
        raise full()
    try:
        yield
    except Exception as e:
        if not disk_full(e):
            raise
        raise full() from None
