"""Test helpers: a real uvicorn server on a free loopback port, and API keys."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from fathom.benchmarks.server_process import free_port
from fathom.service.auth import generate_key, hash_key

__all__ = ["REPO", "Keys", "client", "free_port", "live_server"]

# The checkout's root (tests may live at any depth under tests/).
REPO = Path(__file__).resolve().parent.parent


@contextmanager
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Serve ``app`` over real HTTP in a background thread; yields the base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Keys:
    """Plaintext keys for tests, and the hashed JSON the service is configured with."""

    def __init__(self) -> None:
        self.plain: dict[str, str] = {}
        self.entries: list[dict[str, str | None]] = []

    def add(self, name: str, tenant: str | None, role: str) -> str:
        key = generate_key()
        self.plain[name] = key
        self.entries.append({"id": name, "sha256": hash_key(key), "tenant": tenant, "role": role})
        return key

    def add_tenants(self, tenants: tuple[str, ...] | list[str]) -> "Keys":
        """An admin key ``<t>-admin`` and an app key ``<t>-app`` per tenant."""
        for t in tenants:
            self.add(f"{t}-admin", t, "admin")
            self.add(f"{t}-app", t, "app")
        return self

    def json(self) -> str:
        return json.dumps({"keys": self.entries})

    def headers(self, name: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.plain[name]}", **extra}


def client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, timeout=60)
