"""Shared fixtures: real models, real datasets, real stores, a real HTTP server.

Datasets are read from ``$FATHOM_DATA_DIR`` (default ``../shared/data``);
tests that need one skip with a clear message when it is absent.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")

from fathom.service.core.config import Settings, get_settings  # noqa: E402


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    from fathom.benchmarks.config import data_dir as datasets

    path = datasets()
    if not path.exists():
        pytest.skip(f"datasets not found at {path} (set FATHOM_DATA_DIR)")
    return path


@pytest.fixture(scope="session")
def scifact_dir(data_dir: Path) -> Path:
    path = data_dir / "scifact"
    if not path.exists():
        pytest.skip(f"scifact not found under {data_dir}")
    return path


@pytest.fixture(scope="session")
def prepared_models(base_settings: Settings) -> dict[str, dict[str, Any]]:
    """Manifests of the prepared embedders, by model name.

    Preparing is slow the first time (minutes) and a no-op afterwards (the cache
    in settings.model_dir), so this is session-scoped.
    """
    from fathom.training.prepare import prepare_all

    return prepare_all(base_settings)


@pytest.fixture(scope="session")
def models_ready(prepared_models: dict[str, dict[str, Any]], base_settings: Settings) -> Settings:
    return base_settings


@pytest.fixture(scope="session")
def docs_fixtures(data_dir: Path):  # type: ignore[no-untyped-def]
    """Parse each of the 81 fixture documents at most once per session (some take a minute).

    Returns a function name -> ParsedDocument, raising the file's IngestError.
    """
    from functools import lru_cache

    from fathom.ingest.document import IngestError
    from fathom.ingest.parse import parse_file

    root = data_dir / "docs"
    if not root.exists():
        pytest.skip(f"fixture documents not found at {root}")

    @lru_cache(maxsize=None)
    def outcome(name: str) -> object:
        try:
            return parse_file(root / name)
        except IngestError as exc:
            return exc

    def parse(name: str):  # type: ignore[no-untyped-def]
        result = outcome(name)
        if isinstance(result, IngestError):
            raise result
        return result

    parse.root = root  # type: ignore[attr-defined]
    return parse


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A private redis-server on a free port for the session (tests never touch a shared one)."""
    from tests.ops_support import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sample_state(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings, models_ready: Settings) -> Path:
    """A state folder with the bundled sample corpus ingested into tenants ``alpha`` and ``beta``, built once.

    Serving tests open runtimes on copies (tests.ops_support.open_seeded_runtime) instead of re-ingesting.
    """
    from fathom.service.cli import SAMPLE_CORPUS, ingest_paths
    from fathom.service.runtime import Runtime

    state = tmp_path_factory.mktemp("sample-state")
    # With mpnet vectors: the serving tests exercise a reranker (tests.ops_support.open_seeded_runtime serves mpnet,
    # the one that needs no training), though neither is a default any more.
    rt = Runtime.open(base_settings.model_copy(update={
        "state_dir": state, "registry_url": None, "redis_url": None,
        "rerank": base_settings.rerank.model_copy(update={"kind": "mpnet"}),
        "ingest": base_settings.ingest.model_copy(update={"embed_mpnet": True})}))
    try:
        for tenant in ("alpha", "beta"):
            ingest_paths(rt, tenant, [SAMPLE_CORPUS], {"corpus": "sample"}, quiet=True)
    finally:
        rt.close()
    return state


# --- a real PostgreSQL registry (the Kubernetes deployment's) -----------------------------------------------
PG_URL = os.environ.get("FATHOM_TEST_POSTGRES", "postgresql+psycopg://postgres@localhost:5432/test")


@pytest.fixture()
def pg_registry_url() -> Iterator[str]:
    """A fresh schema in the test PostgreSQL database (skipped without one); dropped afterwards."""
    sa = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    schema = f"race_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG_URL)
    try:
        with engine.begin() as c:
            c.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except Exception as exc:   # noqa: BLE001 - no server: skip with the reason
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {type(exc).__name__}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as c:
            c.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        engine.dispose()
