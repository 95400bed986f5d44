"""AutoDL bootstrap: every cache on the data disk, a Jupyter kernel that uses them, and a check of GPU, driver, torch.

An AutoDL system disk holds 30 GB, which pip, the hubs, Triton and the kit's models fill in one run. CACHES is the one
list: scripts/setup_autodl.sh evals `qwen3-kit setup --print-env` before installing, new shells read the env file,
and the Jupyter kernel carries the same variables (JupyterLab starts before any .bashrc is read).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

CACHES = {  # variable -> its folder under the root
    "PIP_CACHE_DIR": "cache/pip",
    "HF_HOME": "cache/huggingface",
    "MODELSCOPE_CACHE": "cache/modelscope",
    "TRITON_CACHE_DIR": "cache/triton",
    "TORCHINDUCTOR_CACHE_DIR": "cache/torchinductor",
    "XDG_CACHE_HOME": "cache",  # whatever else honours it (torch hub, matplotlib, ...)
    "QWEN3_KIT_CACHE": "qwen3-kit",  # the kit's models, data sets and prepared mixes
}
ENV_FILE = "qwen3-kit.env"
KERNEL = "qwen3-kit"
NEEDED_GB = 80  # the 14B recipe and its export: 4-bit weights 11, 16-bit base 30, merge 30, venv and caches 10
REGISTRY_TORCH = ("2.14.1", "13.0")  # what pip installs for the kit's pins: torch 2.14.1, built for CUDA 13.0


def cache_env(root: Path) -> dict[str, str]:
    return {name: str(root / folder) for name, folder in CACHES.items()}


def env_lines(root: Path) -> str:
    """`export NAME=folder` lines for a shell."""
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in cache_env(root).items())


def write_env(root: Path) -> Path:
    """The env file on the data disk, its folders created."""
    for folder in cache_env(root).values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    path = root / ENV_FILE
    path.write_text(f"# qwen3-kit: caches on the data disk (written by `qwen3-kit setup`)\n{env_lines(root)}\n")
    return path


def hook_shell(env_file: Path, rc: Path) -> bool:
    """Have new shells read the env file (one line in `rc`, added once); True when it was added now."""
    line = f"[ -f {shlex.quote(str(env_file))} ] && . {shlex.quote(str(env_file))}  # qwen3-kit caches"
    text = rc.read_text() if rc.is_file() else ""
    if line in text:
        return False
    rc.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line + "\n")
    return True


def register_kernel(env: dict[str, str]) -> Path:
    """A Jupyter kernel running this Python with the cache variables set."""
    from ipykernel.kernelspec import install

    return Path(install(user=True, kernel_name=KERNEL, display_name="Python (qwen3-kit)", env=env))


def gpu_line() -> tuple[str, str]:
    """(what the GPU check found, the fix or ''): the GPU, the driver and torch's CUDA build."""
    import torch

    from kit.machine import driver_version, no_gpu_reason

    torch_text = f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})"
    if reason := no_gpu_reason():
        return f"none usable, {torch_text}", f"GPU: {reason}; downloads and data preparation work without one"
    props = torch.cuda.get_device_properties(0)
    return (f"{props.name}, {props.total_memory / 1e9:.0f} GB, driver {driver_version() or '?'}, {torch_text}", "")


def check_driver() -> str:
    """Before the install (6.8 GB, torch's CUDA build included): the host's NVIDIA driver against the CUDA build pip
    would install. A line saying what was found; KitError with what to do where the driver is too old."""
    from kit.errors import KitError
    from kit.machine import driver_problem, driver_version

    version, cuda = REGISTRY_TORCH
    driver = driver_version()
    if driver is None:
        return "driver: none found (nvidia-smi); installing anyway: data and downloads need no GPU, training does"
    if problem := driver_problem(driver, cuda, f"{version}+cu{cuda.replace('.', '')}"):
        raise KitError(f"{problem}. With this script: TORCH_INDEX_URL=<that index URL> bash scripts/setup_autodl.sh "
                       "installs that torch before the kit.")
    return f"driver: {driver}, new enough for torch {version} (CUDA {cuda})"


def checks(root: Path) -> tuple[list[str], list[str]]:
    """(lines describing the machine, things to fix)."""
    found, fix = [], []
    gpu, gpu_fix = gpu_line()
    found.append(f"GPU        {gpu}")
    fix += [gpu_fix] if gpu_fix else []
    free = shutil.disk_usage(root).free / 1e9
    found.append(f"disk       {free:.0f} GB free on {root}")
    if free < NEEDED_GB:
        fix.append(f"{root} has {free:.0f} GB free; the 14B recipe with its 16-bit export needs about {NEEDED_GB} GB "
                   "(AutoDL: enlarge the data disk in the console)")
    found.append(f"network    proxy {'on' if os.environ.get('http_proxy') else 'off'} (network_turbo sets it), "
                 f"HF_ENDPOINT {os.environ.get('HF_ENDPOINT') or 'unset'}")
    if not os.environ.get("HF_ENDPOINT") and not os.environ.get("http_proxy"):
        fix.append("Hugging Face is often unreachable from mainland China and configs/qwen3-14b-math.yaml reads its "
                   "reasoning set there: `export HF_ENDPOINT=https://hf-mirror.com` or `source /etc/network_turbo`")
    return found, fix


def setup(root: Path) -> str:
    """Write the env file, hook it into ~/.bashrc, register the kernel, check the machine; the report."""
    if not root.is_dir():
        from kit.errors import KitError

        raise KitError(f"{root} does not exist; on AutoDL it is the data disk, elsewhere pass --root <a large disk>.")
    env_file = write_env(root)
    rc = Path.home() / ".bashrc"
    hooked = hook_shell(env_file, rc)
    kernel = register_kernel(cache_env(root))
    found, fix = checks(root)
    lines = [f"caches     {', '.join(CACHES)} under {root}",
             f"env file   {env_file} ({'added to' if hooked else 'already in'} {rc}; this shell: `source {env_file}`)",
             f"kernel     'Python (qwen3-kit)' in {kernel}: {sys.executable}, with the caches",
             *found]
    lines += ["to fix:", *(f"  - {item}" for item in fix)] if fix else ["nothing to fix"]
    return "\n".join(lines)
