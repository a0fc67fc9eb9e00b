"""Helpers for the hardening tests (API, reliability): a served runtime, and the problem+json assertion."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from fathom.config import Settings
from fathom.service.app import create_app
from fathom.service.problems import MEDIA_TYPE, PROBLEM_BASE
from fathom.service.runtime import Runtime
from tests.jobs_support import job_settings
from tests.support import Keys, live_server


@contextmanager
def serving(base: Settings, state: Path, keys: Keys, **groups: Any) -> Iterator[tuple[str, Runtime]]:
    """The real app over real HTTP on a fresh state folder (job_settings: no mpnet, cache or rate limits)."""
    settings = job_settings(base, state, keys, **groups)
    rt = Runtime.open(settings)
    try:
        with live_server(create_app(settings, rt)) as url:
            yield url, rt
    finally:
        rt.close()


def assert_problem(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with a stable code, served as application/problem+json."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith(MEDIA_TYPE), r.headers["content-type"]
    body = r.json()
    if code is not None:
        assert body["code"] == code, body
    assert body["type"] == PROBLEM_BASE + body["code"] and body["status"] == status
    return body
