"""The evaluation gate: a new index version goes live only if it finds the tenant's golden documents as well.

A golden set is JSONL, one ``{"query": ..., "expected": [document ids]}``
per line: from the tenants file (``golden_set``) or uploaded by an admin
(kept in the document registry, which every process shares; the tenants file
wins, it is the operator's). Both versions are scored through the real retrieval
pipeline, as served (same embedder, fusion and reranker), with the guard
thresholds at zero so that the gate measures ranking, not the guard.
Recall@10 is per document (a document counts once, at its best chunk), with
the benchmarks' definition.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from fathom.ingest.registry import Registry
from fathom.ingest.tenant_files import GOLDEN_SET
from fathom.retrieval.ir_metrics import recall_at_k
from fathom.retrieval.guard import GuardPolicy
from fathom.retrieval.query_pipeline import RetrievalPipeline, RetrievalQuery
from fathom.retrieval.tenancy import Tenant
from fathom.service.core.config import Settings
from fathom.service.tenants import TenantDirectory

GATE_K = 10
_OPEN_POLICY = GuardPolicy(min_confidence=0.0, min_chunk_confidence=0.0)


class GoldenSetInvalid(ValueError):
    pass


class GoldenSetManaged(RuntimeError):
    """The tenants file names this tenant's golden set; it cannot be replaced through the API."""


@dataclass(frozen=True, slots=True)
class GoldenQuery:
    query: str
    expected: tuple[str, ...]


def parse_golden(rows: Iterable[Any], max_queries: int) -> list[GoldenQuery]:
    """Validate golden rows (already decoded JSON objects); the error names the first bad row."""
    out: list[GoldenQuery] = []
    for i, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or set(row) - {"query", "expected"}:
            raise GoldenSetInvalid(f"row {i}: expected an object with 'query' and 'expected'")
        query, expected = row.get("query"), row.get("expected")
        if not isinstance(query, str) or not query.strip():
            raise GoldenSetInvalid(f"row {i}: 'query' must be a non-empty string")
        if not isinstance(expected, list) or not expected or not all(isinstance(d, str) and d for d in expected):
            raise GoldenSetInvalid(f"row {i}: 'expected' must be a non-empty list of document ids")
        out.append(GoldenQuery(query.strip(), tuple(dict.fromkeys(expected))))
        if len(out) > max_queries:
            raise GoldenSetInvalid(f"more than {max_queries} queries")
    if not out:
        raise GoldenSetInvalid("the golden set is empty")
    return out


def read_golden(path: Path, max_queries: int) -> list[GoldenQuery]:
    return parse_jsonl(path.read_text(encoding="utf-8"), max_queries, path.name)


def parse_jsonl(text: str, max_queries: int, name: str = "golden set") -> list[GoldenQuery]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise GoldenSetInvalid(f"{name} line {n}: not JSON ({exc.msg})") from None
    return parse_golden(rows, max_queries)


class GoldenSets:
    """A tenant's golden set: the tenants file's (``golden_set``, the operator's: it wins), else the one an admin
    uploaded, kept in the registry so that the process running a reindex gate sees what the API process stored
    (``tenant_files``; before, under ``<state>/golden/``: still read from there when the registry has none)."""

    def __init__(self, tenants: TenantDirectory, registry: Registry, legacy_root: Path, max_queries: int):
        self.tenants = tenants
        self.registry = registry
        self.legacy_root = legacy_root
        self.max_queries = max_queries

    @classmethod
    def of(cls, settings: Settings, registry: Registry, tenants: TenantDirectory | None = None) -> "GoldenSets":
        """As the service keeps them (its registry, its tenants file, the old folder under its state dir)."""
        return cls(tenants or TenantDirectory(settings), registry, settings.state_path / "golden",
                   settings.jobs.golden_max_queries)

    def _legacy(self, tenant: Tenant) -> Path:
        return self.legacy_root / f"{tenant.id}.jsonl"

    def find(self, tenant: Tenant) -> tuple[Literal["tenants_file", "uploaded"], list[GoldenQuery]] | None:
        """Where the tenant's golden set comes from, and its queries (None: it has none)."""
        configured = self.tenants.get(tenant).golden_set
        if configured is not None:
            if not configured.exists():
                raise GoldenSetInvalid(f"the configured golden set {configured} does not exist")
            return "tenants_file", read_golden(configured, self.max_queries)
        stored = self.registry.read_file(tenant, GOLDEN_SET)
        if stored is not None:
            return "uploaded", parse_jsonl(stored[1], self.max_queries)
        legacy = self._legacy(tenant)
        return ("uploaded", read_golden(legacy, self.max_queries)) if legacy.exists() else None

    def load(self, tenant: Tenant) -> list[GoldenQuery] | None:
        found = self.find(tenant)
        return found[1] if found is not None else None

    def save(self, tenant: Tenant, queries: list[GoldenQuery]) -> None:
        if self.tenants.get(tenant).golden_set is not None:
            raise GoldenSetManaged(f"tenant {tenant}'s golden set is configured in the tenants file")
        self.registry.write_file(tenant, GOLDEN_SET, "".join(
            json.dumps({"query": q.query, "expected": list(q.expected)}) + "\n" for q in queries))


@dataclass(frozen=True, slots=True)
class GateResult:
    queries: int
    baseline_version: int | None
    candidate_version: int
    baseline_recall: float | None       # None: no live version to compare with
    candidate_recall: float
    max_drop: float

    @property
    def drop(self) -> float:
        return 0.0 if self.baseline_recall is None else round(self.baseline_recall - self.candidate_recall, 4)

    @property
    def passed(self) -> bool:
        return self.drop <= self.max_drop

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "metric": f"recall@{GATE_K}", "drop": self.drop, "passed": self.passed}


def recall(pipeline: RetrievalPipeline, tenant: Tenant, version: int, golden: list[GoldenQuery]) -> float:
    """Mean per-document recall@10 of ``version`` over the golden queries."""
    total = 0.0
    for g in golden:
        result = pipeline.retrieve(RetrievalQuery(tenant=tenant, text=g.query, top_k=GATE_K, unique_documents=True,
                                                  policy=_OPEN_POLICY, version=version))
        ranked = [c.hit.document_id for c in result.candidates]
        total += recall_at_k(ranked, {d: 1 for d in g.expected}, GATE_K)
    return round(total / len(golden), 4)


def evaluate(pipeline: RetrievalPipeline, tenant: Tenant, golden: list[GoldenQuery], *, live: int | None,
             candidate: int, max_drop: float) -> GateResult:
    return GateResult(
        queries=len(golden), baseline_version=live, candidate_version=candidate,
        baseline_recall=recall(pipeline, tenant, live, golden) if live is not None else None,
        candidate_recall=recall(pipeline, tenant, candidate, golden), max_drop=max_drop,
    )
