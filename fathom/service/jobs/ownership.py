"""Which process owns the embedded store.

A Qdrant Edge shard can be opened by one process only, so with the edge
backend exactly one process may run jobs and serve: the API server, or a
``fathom worker`` while no API server runs. The owner holds an exclusive
``flock`` on ``<state>/.owner.lock`` for its lifetime; the kernel releases it
when the process dies, even by SIGKILL, so a crash never leaves a stale claim.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class StoreOwned(RuntimeError):
    """Another process owns the embedded store."""


class StoreOwnership:
    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    @classmethod
    def claim(cls, state_dir: Path) -> "StoreOwnership":
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / ".owner.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StoreOwned(f"the embedded store in {state_dir} is owned by process {owner} (an API server or "
                             "another worker); with the edge backend, jobs run inside that process") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
