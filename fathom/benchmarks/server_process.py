"""The real service in its own process, for benchmarks: ``fathom serve`` (uvicorn, one worker) on a free port.

A separate process, not a thread of the benchmark, because that is how it is
deployed: the load generator must not share the server's interpreter (and
GIL), and the embedded store belongs to exactly one process. Settings travel
as ``FATHOM_*`` environment variables, the way an operator configures it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
# Variables of the caller's environment that would point the server at other state than the benchmark's.
_ISOLATED = ("FATHOM_STATE_DIR", "FATHOM_REGISTRY_URL", "FATHOM_REDIS_URL", "FATHOM_SERVICE__API_KEYS",
             "FATHOM_SERVICE__API_KEYS_FILE", "FATHOM_SERVICE__HOST", "FATHOM_SERVICE__PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_keys_json(entries: list[dict[str, str]]) -> str:
    """``FATHOM_SERVICE__API_KEYS``: entries of ``{"id", "sha256", "tenant", "role"}``."""
    return json.dumps({"keys": entries})


@dataclass
class ServerProcess:
    """A running ``fathom serve``; stopped on context exit (SIGTERM, then SIGKILL after a grace period)."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def stop(self, grace_s: float = 30.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=grace_s)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_server(env: Mapping[str, str], log_path: Path, *, ready_timeout_s: float = 300.0) -> ServerProcess:
    """Start ``fathom serve`` with the caller's environment plus ``env``; return once ``/readyz`` answers 200.

    Its JSON log lines go to ``log_path`` (a pipe nobody reads would fill up
    and block the server's event loop mid-run).
    """
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    full_env.update(env)
    full_env.setdefault("DO_NOT_TRACK", "1")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        command = [sys.executable, "-m", "fathom.service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + ready_timeout_s
    with httpx.Client(base_url=server.base_url, timeout=5.0) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"fathom serve exited with {proc.returncode}; see {log_path}")
            try:
                if client.get("/readyz").status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                server.stop()
                raise TimeoutError(f"fathom serve not ready after {ready_timeout_s:.0f} s; see {log_path}")
            time.sleep(0.25)
