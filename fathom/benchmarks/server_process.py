"""The real service in its own process: ``fathom serve`` (uvicorn, one worker) on a free loopback port.

One helper for the benchmarks (``fathom bench load``) and the reliability tests (durability, soak). A
separate process, not a thread of the caller, because that is how it is deployed: the load generator
must not share the server's interpreter (and GIL), the embedded store belongs to exactly one process,
and only a process can be SIGKILLed (durability) or watched from outside through ``/proc/<pid>``
(soak: RSS, open file descriptors). Settings travel as ``FATHOM_*`` environment variables, the way an
operator configures it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
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


class ServerProcess:
    """``python -m fathom.service.cli serve`` with exactly ``env``; the caller decides how it ends.

    Its JSON log lines go to ``log_path`` (a pipe nobody reads would fill up and block the server's
    event loop mid-run).
    """

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int | None = None):
        self.env, self.log_path = dict(env), Path(log_path)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 240.0, *, ready_path: str = "/healthz") -> "ServerProcess":
        """Start it and return once ``ready_path`` answers 200 (``/readyz``: also the models and the store)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fathom.service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.url, timeout=5.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"fathom serve exited with {self.proc.returncode}; see {self.log_path}:\n"
                                       f"{self.tail()}")
                try:
                    if client.get(ready_path).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise TimeoutError(f"fathom serve did not answer {ready_path} in {timeout_s:.0f} s; see "
                                       f"{self.log_path}:\n{self.tail()}")
                time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no lifespan shutdown, no flush, no lock release but the kernel's."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, grace_s: float = 90.0, *, strict: bool = True) -> int | None:
        """SIGTERM and wait for uvicorn's graceful shutdown (the lifespan closes the store); its exit code.

        Past ``grace_s`` it is killed; ``strict`` then re-raises the timeout (a shutdown that hangs is a bug
        the reliability tests must see), otherwise the kill is the end of it.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
                if strict:
                    raise
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop(30.0, strict=False)

    def tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    # --- /proc figures -----------------------------------------------------------------
    def rss_bytes(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS")

    def fds(self) -> list[str]:
        """What each open file descriptor points at (``socket:[n]``, ``pipe:[n]``, a path, ``... (deleted)``)."""
        out = []
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                out.append(os.readlink(fd))
            except FileNotFoundError:   # closed while listing
                continue
        return out


def start_server(env: Mapping[str, str], log_path: Path, *, ready_timeout_s: float = 300.0) -> ServerProcess:
    """``fathom serve`` with the caller's environment (less what would point it at other state) plus ``env``,
    once ``/readyz`` answers 200."""
    full_env = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    full_env.update(env)
    full_env.setdefault("DO_NOT_TRACK", "1")
    return ServerProcess(full_env, log_path).start(ready_timeout_s, ready_path="/readyz")
