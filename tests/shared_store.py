"""One server-backend store reached by several processes, for tests that need writers in different processes.

No Qdrant server binary can be installed here (only registry packages), and qdrant-client's local mode is
single-process. So one host process runs the real :class:`ServerStore` adapter over ``QdrantClient(":memory:")``
and serves its methods through a :mod:`multiprocessing.managers` socket; each API process opens a
:class:`RemoteStore` on it. Every call runs whole under one lock in the host, as a server applies one request
atomically. The adapter code, the registry and the API processes are the real ones; only the transport between
a process and "the cluster" is this socket instead of HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from multiprocessing.managers import BaseManager
from typing import Any

AUTHKEY = b"fathom-shared-store-test"


class _Host:
    def __init__(self) -> None:
        from qdrant_client import QdrantClient

        from fathom.retrieval.store.server_store import ServerStore

        self.store = ServerStore(QdrantClient(":memory:"), prefix="shared")
        self.lock = threading.Lock()

    def call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self.lock:
            out = getattr(self.store, name)(*args, **kwargs)
            return list(out) if name == "scroll" else out


_HOST: _Host | None = None


def _host() -> _Host:
    global _HOST
    if _HOST is None:
        _HOST = _Host()
    return _HOST


class _Manager(BaseManager):
    pass


_Manager.register("host", callable=_host, exposed=("call",))


def serve(address: tuple[str, int]) -> None:
    """Run the host (blocks): ``python -c 'from tests.shared_store import serve; serve(("127.0.0.1", PORT))'``."""
    _Manager(address=address, authkey=AUTHKEY).get_server().serve_forever()


class RemoteStore:
    """The VectorStore protocol, forwarded to the host (scroll comes back as a list, then iterated)."""

    def __init__(self, address: tuple[str, int]):
        manager = _Manager(address=address, authkey=AUTHKEY)
        manager.connect()
        self._host = manager.host()   # type: ignore[attr-defined]

    def scroll(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(self._host.call("scroll", args, kwargs))

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: self._host.call(name, args, kwargs)
