"""The pack the GPU machine gets (../shared/gpu/pack.sh writes .gpu-site/site.tar.xz) holds everything the GPU path
imports beyond that machine's image (../shared/gpu/image-packages.txt): a package missing from it fails here, on the
CPU, not on a lease. scripts/gpu_check.py's rehearsal (tests/test_gpu_check.py) runs under the same restriction."""

import json
import os
import re
import subprocess
import sys

from tests.conftest import ROOT, _normal_name, gpu_image_env

# The GPU path: what scripts/gpu_check.py, tests/gpu and the kit's unsloth backend import, heavy imports included
# (the kit imports them inside functions, so importing its modules alone would not reach them).
GPU_PATH = """
import importlib, json, os, pkgutil, sys
os.environ["UNSLOTH_ALLOW_CPU"] = "1"  # no GPU here: Unsloth imports for API checks (kit.training.backends)
from kit.training.backends import import_unsloth
import_unsloth()
from unsloth.models.rl import patch_trl_rl_trainers
patch_trl_rl_trainers()  # Unsloth's generated TRL trainers, as on a GPU
import bitsandbytes, datasets, math_verify, peft, trl, unsloth_zoo, pytest
trl.SFTTrainer, trl.GRPOTrainer, trl.SFTConfig, trl.GRPOConfig
import kit
modules = [m.name for m in pkgutil.walk_packages(kit.__path__, "kit.")]
for name in modules + ["tests.shapes", "tests.gpu.test_gpu"]:
    importlib.import_module(name)
spec = importlib.util.spec_from_file_location("gpu_check", "scripts/gpu_check.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps({"modules": len(modules)}))
"""


def test_every_runtime_dependency_is_packed_or_on_the_image(gpu_pack):
    leave = re.search(r'LEAVE_OUT="([^"]*)"', (ROOT.parent / "shared/gpu/pack.sh").read_text()).group(1).split()
    block = re.search(r"^dependencies = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.S | re.M).group(1)
    needed = {_normal_name(re.split(r"[\s<>=!~;\[]", dep, maxsplit=1)[0]) for dep in re.findall(r'"([^"]+)"', block)}
    missing = needed - set(leave) - gpu_pack["packed"] - gpu_pack["image"]
    assert not missing, f"re-run ../shared/gpu/pack.sh: {sorted(missing)} neither packed nor on the image"


def test_the_gpu_path_imports_from_the_pack_and_the_image_alone(gpu_pack, tmp_path):
    env = gpu_image_env(tmp_path / "image", gpu_pack)
    result = subprocess.run([sys.executable, "-c", GPU_PATH], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **env})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["modules"] > 40


def test_a_package_missing_from_the_pack_fails_here(gpu_pack, tmp_path):
    without_trl = {**gpu_pack, "packed": gpu_pack["packed"] - {"trl"}, "modules": gpu_pack["modules"] - {"trl"}}
    env = gpu_image_env(tmp_path / "image", without_trl)
    result = subprocess.run([sys.executable, "-c", GPU_PATH], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, **env})
    assert result.returncode != 0 and "import of trl halted" in result.stderr, result.stderr[-3000:]
