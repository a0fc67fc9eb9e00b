"""The answer cache: exact match first, then a near-identical question (query-embedding cosine).

Scope of an entry = tenant + live index version + the tenant's write
generation + everything in the request that shapes the answer (mode, top_k,
rerank, filters, the tenant's guard thresholds) + a fingerprint of the
retrieval settings. A tenant's lookup can only ever read its own scope, and a
write moves the tenant to a new scope (see ``generation.py``).

Only ``ok`` answers are stored: a degraded answer would outlive the fault,
and a ``no_relevant_context`` one would hide documents ingested later in the
same generation if a bump were ever lost.

The semantic step is skipped in ``bm25`` mode: lexical search answers the
words, so two questions with close embeddings may rightly get different answers.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fathom.service.core.config import CacheSettings, Settings
from fathom.retrieval.tenancy import Tenant
from fathom.service.cache.generation import Generations
from fathom.service.cache.cache_backends import AnswerStore, Scope
from fathom.service.redis_link import RedisBypassed, RedisLink

Outcome = Literal["hit-exact", "hit-semantic", "miss", "bypassed", "off"]

# Bump when the cached answer format changes, so a rolling deploy never reads the old shape.
FORMAT = 2   # 2: chunks and answers carry injection flags


@dataclass(frozen=True, slots=True)
class AnswerParams:
    """The request parameters that change the answer (besides the tenant, the index and the text)."""

    mode: str
    top_k: int
    rerank: bool
    filters: dict[str, Any] | None
    min_confidence: float
    min_chunk_confidence: float

    def canonical(self) -> str:
        return json.dumps([self.mode, self.top_k, self.rerank, self.filters, self.min_confidence,
                           self.min_chunk_confidence], sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class Lookup:
    outcome: Outcome
    answer: dict[str, Any] | None = None    # the cached response fields on a hit
    scope: Scope | None = None               # where a fresh answer may be stored (None: bypassed or off)
    entry_id: str = ""
    index: list[tuple[str, np.ndarray]] | None = None
    semantic: bool = False                   # the semantic step applies (needs the query embedding)


def normalise(text: str) -> str:
    """Exact-match key text: Unicode NFKC and collapsed whitespace. Case is kept: exact means the same input."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def settings_fingerprint(settings: Settings) -> str:
    """Retrieval settings that change answers; processes configured differently never share entries."""
    parts = [FORMAT, settings.retrieval.model_dump(mode="json"), settings.rerank.model_dump(mode="json"),
             settings.guard.model_dump(mode="json"), settings.store.hnsw_ef]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


class AnswerCache:
    def __init__(self, store: AnswerStore, generations: Generations, settings: CacheSettings, fingerprint: str,
                 link: RedisLink | None = None):
        self.store = store
        self.generations = generations
        self.settings = settings
        self.fingerprint = fingerprint
        self.link = link

    def state(self, probe: bool = False) -> Literal["ok", "memory", "bypassed"]:
        """``memory`` (in-process), or Redis ``ok``/``bypassed``; ``probe`` pings Redis (unless the breaker is open)."""
        if self.link is None:
            return "memory"
        healthy = self.link.ping() if probe else self.link.healthy
        return "ok" if healthy else "bypassed"

    def lookup(self, tenant: Tenant, index_version: int, params: AnswerParams, text: str) -> Lookup:
        """The exact step (one round trip: the entry and the scope's index come together)."""
        try:
            generation = self.generations.current(tenant)
            scope_key = json.dumps([self.fingerprint, tenant.id, index_version, generation, params.canonical()])
            scope = Scope(tenant.id, hashlib.sha256(scope_key.encode()).hexdigest())
            entry_id = hashlib.sha256(f"{scope.digest}\n{normalise(text)}".encode()).hexdigest()[:32]
            raw, index = self.store.fetch(scope, entry_id)
        except RedisBypassed:
            return Lookup("bypassed")
        semantic = self.settings.semantic and params.mode != "bm25"
        answer = self._decode(raw, tenant)
        if answer is not None:
            return Lookup("hit-exact", answer, scope, entry_id)
        return Lookup("miss", None, scope, entry_id, index, semantic)

    def match(self, lookup: Lookup, tenant: Tenant, vector: np.ndarray) -> Lookup:
        """The semantic step: the closest cached question of the same scope, if its cosine clears the threshold."""
        if not (lookup.semantic and lookup.index and lookup.scope):
            return lookup
        usable = [(i, v) for i, v in lookup.index if v.size == vector.size]
        if not usable:
            return lookup
        cosines = np.stack([v for _, v in usable]).astype(np.float32) @ _unit(vector)
        best = int(np.argmax(cosines))
        if float(cosines[best]) < self.settings.semantic_threshold:
            return lookup
        try:
            answer = self._decode(self.store.get(lookup.scope, usable[best][0]), tenant)
        except RedisBypassed:
            return Lookup("bypassed")
        if answer is None:
            return lookup
        return Lookup("hit-semantic", answer, lookup.scope, lookup.entry_id)

    def put(self, lookup: Lookup, tenant: Tenant, vector: np.ndarray | None, answer: dict[str, Any]) -> None:
        """Store a fresh ``ok`` answer under the scope read *before* it was computed (see ``generation.py``)."""
        if lookup.scope is None:
            return
        value = json.dumps({"tenant": tenant.id, "answer": answer}, separators=(",", ":")).encode()
        stored = _unit(vector) if vector is not None and lookup.semantic else np.empty(0, dtype=np.float32)
        try:
            self.store.put(lookup.scope, lookup.entry_id, stored, value)
        except RedisBypassed:
            pass   # the answer goes out regardless; the link already logged and counted the error

    @staticmethod
    def _decode(raw: bytes | None, tenant: Tenant) -> dict[str, Any] | None:
        if raw is None:
            return None
        data = json.loads(raw)
        # Defence in depth: the scope already contains the tenant, so this never fails unless keys were tampered with.
        return data["answer"] if data.get("tenant") == tenant.id else None


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / (np.linalg.norm(v) + 1e-12)
