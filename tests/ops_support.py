"""Test helpers for the serving path: a private redis-server process, and runtimes on a seeded state copy."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from fathom.service.core.config import Settings
from fathom.service.runtime import Runtime
from tests.support import Keys, free_port


class RedisServer:
    """A redis-server of our own on a free loopback port (never a shared one), without persistence."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir, self.port = workdir, port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> "RedisServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
        self.proc = None

    def pause(self) -> None:
        """Freeze the process (SIGSTOP): connections hang instead of being refused, and the data survives."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)


@contextmanager
def running_redis(workdir: Path) -> Iterator[RedisServer]:
    """A private redis-server for one test module (the fault tests kill and restart theirs)."""
    server = RedisServer(workdir).start()
    try:
        yield server
    finally:
        server.stop()


def open_seeded_runtime(seed: Path, workdir: Path, base: Settings, keys: Keys, **groups: Any) -> Runtime:
    """A runtime on a private copy of the seeded state (sample corpus in tenants alpha and beta).

    ``groups`` override top-level settings: ``redis_url="..."`` or ``cache={"ttl_s": 5}``
    (a dict updates that settings group).
    """
    state = workdir / "state"
    shutil.copytree(seed, state)
    # A generous rerank budget: this machine is shared, and a reranker timeout (degraded, so not cached) would
    # make cache assertions depend on load. Tests of the deadline set it back. The mpnet reranker (not a default)
    # and its vectors, because these tests exercise a reranker's fault paths; the same for the judge's budget.
    update: dict[str, Any] = {"state_dir": state, "registry_url": None,
                              "service": base.service.model_copy(update={"api_keys": keys.json(), "api_keys_file": None}),
                              "rerank": base.rerank.model_copy(update={"budget_ms": 10_000.0, "kind": "mpnet"}),
                              "ingest": base.ingest.model_copy(update={"embed_mpnet": True}),
                              "judge": base.judge.model_copy(update={"budget_ms": 10_000.0})}
    for name, value in groups.items():
        update[name] = getattr(base, name).model_copy(update=value) if isinstance(value, dict) else value
    return Runtime.open(base.model_copy(update=update))
