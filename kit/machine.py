"""The machine: is a CUDA GPU usable here, and if not, why (the torch build, hidden devices, the NVIDIA driver); how
torch uses the CPU's cores. The driver floors are NVIDIA's minor-version compatibility: CUDA 12.x from 525.60.13,
13.x from 580.65.06 (docs.nvidia.com/deploy/cuda-compatibility).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from kit.paths import AUTODL_DATA_DISK

# torch's OpenMP threads spin while they wait for each other: when another process holds a core, every parallel
# region waits for a descheduled thread. On a loaded 2-core CPU (load average 5-10), 2 threads against 1: a smoke
# training step 10.7-16.8 s against 1.3, a tiny-model decoding step 73 ms against 5.0; waiting asleep, 2 threads take
# 0.3-0.95 s and 5.6 ms. OpenMP reads this once, as torch is imported: `import kit` sets it first, unless the user did.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
MIN_DRIVER = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}  # CUDA major -> lowest Linux driver
TORCH_INDEX = {11: "cu118", 12: "cu126"}  # PyTorch's wheel index for each older CUDA major


def version_tuple(text: str) -> tuple[int, ...]:
    """'535.104.05' -> (535, 104, 5); '13.0' -> (13, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def driver_problem(driver: str, cuda: str, torch_version: str) -> str | None:
    """Why driver `driver` cannot run a torch built for CUDA `cuda`, with the fix; None when it can."""
    major = version_tuple(cuda)[0]
    need = MIN_DRIVER.get(major)
    if need is None or version_tuple(driver) >= version_tuple(need):
        return None
    runs = max((m for m, floor in MIN_DRIVER.items() if version_tuple(driver) >= version_tuple(floor)), default=None)
    other = (f", or install a torch built for CUDA {runs} (`pip install torch=={torch_version.split('+')[0]} "
             f"--index-url https://download.pytorch.org/whl/{TORCH_INDEX[runs]}`)") if runs in TORCH_INDEX else ""
    return (f"the NVIDIA driver {driver} is too old for torch {torch_version}, which is built for CUDA {cuda} and "
            f"needs driver {need} or newer: rent a host whose driver supports CUDA {major} "
            f"(AutoDL lists each host's highest CUDA version){other}")


def proc_driver_version(text: str) -> str | None:
    """The version in /proc/driver/nvidia/version's text (the proprietary or the open kernel module)."""
    found = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+\.\d+(?:\.\d+)?)", text)
    return found.group(1) if found else None


def driver_version() -> str | None:
    """The loaded NVIDIA kernel driver's version, from /proc or nvidia-smi; None where there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        text = ""
    if found := proc_driver_version(text):
        return found
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    return lines[0] if out.returncode == 0 and lines else None


def no_gpu_reason() -> str:
    """'' when torch can use a CUDA GPU; otherwise why not, in one clause naming the fix."""
    import torch

    if torch.cuda.is_available():
        return ""
    if torch.version.cuda is None:
        return f"the installed torch {torch.__version__} is a CPU-only build; reinstall the kit (`pip install -e .`)"
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU; unset it"
    driver = driver_version()
    if driver is None:
        autodl = " (on AutoDL: the instance runs without a GPU, 无卡模式; start it again with one)"
        return "no NVIDIA driver or GPU is visible on this machine" + (autodl if AUTODL_DATA_DISK.is_dir() else "")
    return (driver_problem(driver, torch.version.cuda, torch.__version__)
            or f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot use the GPU under driver {driver}; "
               "`nvidia-smi` shows its state")


def release_memory() -> None:
    """Give back what an unreferenced model held (Python's cycles, then the CUDA cache) before the next loads."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()

