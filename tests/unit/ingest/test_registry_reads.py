"""The registry reads on the query path (context assembly's stored documents) on SQLite and the real PostgreSQL:
tenant-scoped, only ingested documents, batched ids, one prepared statement reused across calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fathom.ingest.document import Element
from fathom.ingest.registry import DocumentRecord, Registry
from fathom.retrieval.tenancy import Tenant


@pytest.fixture(params=["sqlite", "postgresql"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    url = f"sqlite:///{tmp_path / 'registry.db'}" if request.param == "sqlite" else \
        request.getfixturevalue("pg_registry_url")
    reg = Registry(url)
    yield reg
    reg.close()


def test_stored_elements_are_the_tenants_ingested_documents_only(registry: Registry) -> None:
    docs = [(DocumentRecord("acme", f"d{i}", 2, "ok", content_hash=f"h{i}"), [Element(f"text {i}", "NarrativeText")])
            for i in range(450)]                                             # more than one 200-id batch
    docs.append((DocumentRecord("acme", "broken", 1, "failed"), None))
    docs.append((DocumentRecord("other", "d1", 1, "ok"), [Element("another tenant's text", "NarrativeText")]))
    registry.upsert_many(docs)
    acme = Tenant("acme")
    wanted = [f"d{i}" for i in range(0, 450, 2)] + ["broken", "missing"]
    for _ in range(2):                                                         # the second call reuses the statement
        got = {d: (v, h, [e.text for e in els]) for d, v, h, els in registry.stored_elements(acme, wanted)}
        assert got == {f"d{i}": (2, f"h{i}", [f"text {i}"]) for i in range(0, 450, 2)}
    assert [e.text for _, _, _, els in registry.stored_elements(Tenant("other"), ["d1"]) for e in els] == \
        ["another tenant's text"]
    assert registry.stored_elements(acme, []) == []
    assert sorted(r.document_id for r, _ in registry.with_elements(acme, ["d0", "d3", "broken"])) == ["d0", "d3"]
