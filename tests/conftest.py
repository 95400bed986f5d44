"""Shared fixtures: an isolated kit cache, the tiny model (built once per session), the real Qwen3 tokenizer."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
QWEN3_TOKENIZER = ROOT.parent / "shared" / "fixtures" / "qwen3-tokenizer"
GPU_SHARED = ROOT.parent / "shared" / "gpu"  # pack.sh and the GPU image's package list (../shared/gpu/README.md)
GPU_PACK = ROOT / ".gpu-site" / "site.tar.xz"


def _gpu_session(config) -> bool:
    selected = config.option.markexpr or ""
    return "gpu" in selected and "not gpu" not in selected


def pytest_configure(config):
    """The CPU suite pins CPU behaviour (fp32, exact resumes), so on a GPU machine it hides the GPUs and runs the
    same way; `pytest -m gpu tests/gpu` keeps them. Set before anything here imports torch."""
    if not _gpu_session(config):
        os.environ["CUDA_VISIBLE_DEVICES"] = ""


# What makes a test slow: a trained run, a built real-size shape, or a process of its own (scripts, notebooks,
# servers), asked for by the test, its fixtures or the module's helpers it calls; or a `slow` mark of its own (an
# in-process training). `pytest -m "not slow"` is the fast layer: unit tests on temporary folders and in-memory data.
SLOW_FIXTURES = {"smoke_run", "grpo_run", "smoke_sweep", "rehearsal", "qwen3_1_7b"}
SLOW_CALLS = ("run_script(", "run_notebook(", "subprocess.", "Popen(")


def _sources(item) -> str:
    """The test's code, its fixtures' and that of the module-level functions either names."""
    functions = [item.function, *(d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs)]
    code = "".join(inspect.getsource(f) for f in functions if inspect.isfunction(f))
    helpers = [f for name, f in vars(item.module).items() if inspect.isfunction(f) and f"{name}(" in code]
    return code + "".join(inspect.getsource(f) for f in helpers)


def pytest_collection_modifyitems(items):
    for item in items:
        if hasattr(item, "function") and (SLOW_FIXTURES & set(item.fixturenames)
                                          or any(call in _sources(item) for call in SLOW_CALLS)):
            item.add_marker(pytest.mark.slow)


KEPT = Path.home() / ".cache" / "qwen3-kit-ci"  # kept across sessions, as .ci/run's vLLM venv is


def _tiny_inputs() -> str:
    """A digest of what the pretrained tiny default is made from: its code, the toy world, the chat template, and
    the versions of the libraries whose numerics it carries."""
    from hashlib import sha256
    from importlib.metadata import version

    digest = sha256(f"{version('torch')} {version('transformers')} {version('tokenizers')}".encode())
    models = ROOT / "kit" / "models"
    for path in [models / "toy.py", models / "tiny.py", *sorted(models.glob("templates/*"))]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def link_tiny_default(cache: Path) -> None:
    """Put the pretrained tiny default into a kit cache: pretrained (minutes) once for all sessions, under KEPT, until
    what it is made from changes, and linked where `build_tiny_model()` looks for it."""
    from kit.models.tiny import TINY_VERSION, build_tiny_model

    (cache / "models").mkdir(parents=True, exist_ok=True)
    (cache / "models" / f"tiny-qwen3-v{TINY_VERSION}").symlink_to(build_tiny_model(KEPT / f"tiny-{_tiny_inputs()}"))


@pytest.fixture(scope="session", autouse=True)
def kit_cache(tmp_path_factory, pytestconfig) -> Path:
    """Every test writes downloads, prepared data and models into one temporary cache, never the user's. The tiny
    default is in it first, as scripts reach it by name; not in a GPU session, whose tests build published shapes:
    pretraining it there would spend minutes of a lease."""
    cache = tmp_path_factory.mktemp("kit-cache")
    os.environ["QWEN3_KIT_CACHE"] = str(cache)
    os.environ.setdefault("WANDB_MODE", "disabled")
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    if not _gpu_session(pytestconfig):
        link_tiny_default(cache)
    return cache


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def tiny_dir(kit_cache) -> Path:
    from kit.models.tiny import build_tiny_model

    return build_tiny_model()


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir)


@pytest.fixture(scope="session")
def qwen3_tokenizer():
    if not (QWEN3_TOKENIZER / "tokenizer.json").is_file():
        pytest.skip(reason=f"the real Qwen3 tokenizer fixture is absent ({QWEN3_TOKENIZER}); CI has it beside the repo")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(QWEN3_TOKENIZER)


@pytest.fixture
def smoke_cfg():
    """The smoke config as a function of overrides."""
    from kit.config import load_config

    def make(*overrides: str):
        return load_config(ROOT / "configs" / "smoke.yaml", list(overrides))

    return make


def run_script(*args: str, check: bool = True, timeout: int = 600, env: dict | None = None):
    """Run one of the kit's scripts as a user would, with this session's cache (and `env` over the environment)."""
    import os
    import subprocess
    import sys

    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                            env=os.environ | env if env else None)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def run_notebook(name: str, overrides: list[str]):
    """Execute notebooks/<name> top to bottom, with `overrides` appended to its OVERRIDES right after the parameters
    cell (as papermill injects parameters); fails on any cell's error."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(f"OVERRIDES = OVERRIDES + {overrides!r}"))
    try:  # one failure, with the cell that failed, whatever the cause (an error or a slow machine's timeout)
        NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    except CellExecutionError as e:
        pytest.fail(f"{name}: {str(e)[-2000:]}")


@pytest.fixture(scope="session")
def smoke_run(kit_cache, tmp_path_factory) -> Path:
    """The README's first command, run once per session: the tiny model trained on the smoke config (CPU)."""
    out = tmp_path_factory.mktemp("runs")
    run_script("scripts/train.py", "--config", "configs/smoke.yaml", f"train.output_dir={out}")
    return out / "smoke"


@pytest.fixture
def run_copy(smoke_run, tmp_path):
    """A copy of the smoke run (as `<tmp>/runs/smoke`) to damage: the shared one stays whole."""
    import shutil

    def make(*, checkpoints: bool = True) -> Path:
        copy = tmp_path / "runs" / "smoke"
        skip = [".lock"] + ([] if checkpoints else ["checkpoints"])
        shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns(*skip))
        return copy

    return make


ADAPTER_FAULTS = {  # name -> how a file of an adapter folder is damaged (a copy cut short, a full disk, an edit)
    "weights missing": lambda a: (a / "adapter_model.safetensors").unlink(),
    "weights cut short": lambda a: _cut(a / "adapter_model.safetensors"),
    "weights not safetensors": lambda a: (a / "adapter_model.safetensors").write_bytes(b"\x00\x01garbage" * 50),
    "config cut short": lambda a: _cut(a / "adapter_config.json"),
    "config not UTF-8": lambda a: (a / "adapter_config.json").write_bytes(b'{"r": 16, "x": "\xff"}'),
}
ADAPTER_FAULT_SAID = r"adapter_(model.safetensors|config.json) (is missing|is cut short|is not)"


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="session")
def grpo_run(smoke_run) -> Path:
    """The README's GRPO command, run once per session: the smoke run's adapter reinforced for a few steps (CPU)."""
    run_script("scripts/grpo.py", "--config", "configs/smoke.yaml", f"train.output_dir={smoke_run.parent}")
    return smoke_run.parent / "smoke-grpo"


SWEEP = ["data.chat_ratio=0,0.25"]  # = notebook 08's default parameters: it finds this sweep complete


@pytest.fixture(scope="session")
def smoke_sweep(kit_cache, tmp_path_factory) -> dict:
    """Notebook 08's sweep of the tiny model, run once per session as a preempted machine runs it: stopped by SIGTERM
    once its second point has a checkpoint, then the same command again. Returns its train.output_dir, the exit
    status and output of each command, and the pool cache's folders after it."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path_factory.mktemp("sweep")
    args = [sys.executable, "scripts/sweep.py", "--config", "configs/smoke.yaml", *SWEEP, f"train.output_dir={out}"]
    cache = {"QWEN3_KIT_CACHE": str(out / "cache")}  # its own: the pools it tokenizes, none of other tests'
    link_tiny_default(out / "cache")
    with open(out / "first.log", "w") as log:  # a file, not a pipe a long output could fill
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                                env=os.environ | cache)
        second, deadline = out / "smoke-sweep" / "smoke-chat0.25" / "checkpoints", time.time() + 600
        while not list(second.glob("checkpoint-*/trainer_state.json")):
            if proc.poll() is not None or time.time() > deadline:
                pytest.fail(f"the sweep ended before its second point's first checkpoint:\n"
                            f"{(out / 'first.log').read_text()[-3000:]}")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=600)
    again = run_script(*args[1:], check=False, env=cache)
    return {"out": out, "first": (proc.returncode, (out / "first.log").read_text()),
            "again": (again.returncode, again.stdout + again.stderr),
            "pools": sorted((out / "cache" / "pools").iterdir())}


def _normal_name(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="session")
def gpu_pack() -> dict:
    """What the GPU machine will have beyond the stdlib, by distribution and by top-level module: its image's
    packages (image-packages.txt; pip, setuptools and wheel, which a package list read by `pip freeze` omits) and
    those in .gpu-site/site.tar.xz (../shared/gpu/pack.sh). Skips where either is absent."""
    import tarfile

    image_list = GPU_SHARED / "image-packages.txt"
    if not GPU_PACK.is_file() or not image_list.is_file():
        pytest.skip(reason=f"no pack to check: run ../shared/gpu/pack.sh first ({GPU_PACK} or {image_list} absent)")
    tops = {name.removeprefix("./").split("/")[0] for name in tarfile.open(GPU_PACK).getnames()} - {".", ""}
    image = {_normal_name(line.strip()) for line in image_list.read_text().splitlines()
             if line.strip() and not line.startswith("#")}
    return {"image": image | {"pip", "setuptools", "wheel"},
            "packed": {_normal_name(t.split("-")[0]) for t in tops if t.endswith(".dist-info")},
            "modules": {t.split(".")[0] for t in tops if not t.endswith(".dist-info")}}


def gpu_image_env(folder: Path, pack: dict | None) -> dict:
    """Environment variables under which Python sees only what the GPU machine has: a sitecustomize.py in `folder`
    sets sys.modules[name] = None for every other top-level module installed here (`import name` then fails, and
    importlib.util.find_spec(name) is None, as for a package not installed). Without `pack`, only what pack.sh
    leaves out (its LEAVE_OUT) is hidden."""
    import pkgutil
    import re
    import sys
    from importlib.metadata import packages_distributions

    owners = packages_distributions()
    if pack:
        have = pack["image"] | pack["packed"] | {"qwen3-kit"}
        allowed = set(sys.stdlib_module_names) | pack["modules"] | {"kit", "tests"}
        hidden = sorted(m.name for m in pkgutil.iter_modules() if m.name not in allowed and m.name in owners
                        and not any(_normal_name(d) in have for d in owners[m.name]))
    else:
        script = GPU_SHARED / "pack.sh"
        leave = re.search(r'LEAVE_OUT="([^"]*)"', script.read_text()).group(1).split() if script.is_file() else []
        hidden = sorted(m for m, dists in owners.items() if any(_normal_name(d) in leave for d in dists))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({hidden!r}))\n")
    # The hidden packages' pytest plugins are still registered here (their metadata is), and pytest would load them.
    return {"PYTHONPATH": f"{folder}:{ROOT}", "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
