"""The answer cache: exact match first, then a near-identical question (query-embedding cosine).

Scope of an entry = tenant + live index version + the tenant's write
generation + everything in the request that shapes the answer (mode, top_k,
rerank, filters, the tenant's guard thresholds, the context options) + a fingerprint of the
retrieval settings. A tenant's lookup can only ever read its own scope, and a
write moves the tenant to a new scope (see ``generation.py``).

Only ``ok`` answers are stored: a degraded answer would outlive the fault,
and a ``no_relevant_context`` one would hide documents ingested later in the
same generation if a bump were ever lost.

The semantic step is skipped in ``bm25`` mode: lexical search answers the
words, so two questions with close embeddings may rightly get different answers.

**A semantic hit must be the same question.** Embeddings barely see numbers,
names, identifiers or a negation: "status of account 55501848" and "... of
account 55501847" are at cosine 0.98+, and the second was served the first's
answer (the issue's finding). So besides the cosine, a semantic hit needs the
same *question terms* (:func:`question_terms`: the query's BM25 terms in
order - NFKC, casefolded, stemmed, a short stop list out; numbers,
identifiers, names and negations in): the tier then only bridges case,
punctuation, articles, inflection and embedding noise, never another number,
name or word order. ``fathom bench cache`` measures the hit and wrong-answer
rates on labelled paraphrase and near-miss pairs (README: Reliability).
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from fathom.retrieval.bm25 import tokenize
from fathom.service.core.config import CacheSettings, Settings
from fathom.retrieval.tenancy import Tenant
from fathom.service.cache.generation import Generations
from fathom.service.cache.cache_backends import AnswerStore, Scope
from fathom.service.redis_link import RedisBypassed, RedisLink

Outcome = Literal["hit-exact", "hit-semantic", "miss", "bypassed", "off"]

SEMANTIC_CANDIDATES = 3   # cached questions over the threshold whose terms are compared, closest first

# Bump when the cached answer format changes, so a rolling deploy never reads the old shape.
FORMAT = 4   # 2: chunks and answers carry injection flags; 3: entries carry their question terms; 4: assembled
           # context (passages, context, citations)


@dataclass(frozen=True, slots=True)
class AnswerParams:
    """The request parameters that change the answer (besides the tenant, the index and the text)."""

    mode: str
    top_k: int
    rerank: bool
    filters: dict[str, Any] | None
    min_confidence: float
    min_chunk_confidence: float
    context: dict[str, Any] | None = None    # context assembly options and tokenizer (None: no assembly)

    def canonical(self) -> str:
        return json.dumps([self.mode, self.top_k, self.rerank, self.filters, self.min_confidence,
                           self.min_chunk_confidence, self.context], sort_keys=True, separators=(",", ":"))


@dataclass(slots=True)
class Lookup:
    outcome: Outcome
    answer: dict[str, Any] | None = None    # the cached response fields on a hit
    scope: Scope | None = None               # where a fresh answer may be stored (None: bypassed or off)
    entry_id: str = ""
    index: list[tuple[str, np.ndarray]] | None = None
    semantic: bool = False                   # the semantic step applies (needs the query embedding)


def question_terms(text: str) -> list[str]:
    """What makes two questions the same for the semantic tier: the BM25 query terms, in order.

    The tokenizer retrieval uses (fathom.retrieval.bm25.tokenize): NFKC and casefolding, a short stop list
    ("the", "is", "of", ...; "not" and "no" are kept), Snowball stemming; digits stay as written, so
    ``55501847``, ``ORD-7731``, ``3.11`` and ``E1042`` are terms of their own, and "aren't" keeps its "t".
    """
    return tokenize(text)


def normalise(text: str) -> str:
    """Exact-match key text: Unicode NFKC and collapsed whitespace. Case is kept: exact means the same input."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


def settings_fingerprint(settings: Settings) -> str:
    """Retrieval settings that change answers; processes configured differently never share entries."""
    parts = [FORMAT, settings.retrieval.model_dump(mode="json"), settings.rerank.model_dump(mode="json"),
             settings.guard.model_dump(mode="json"), settings.store.hnsw_ef, settings.context.model_dump(mode="json")]
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

    def match(self, lookup: Lookup, tenant: Tenant, vector: np.ndarray, text: str) -> Lookup:
        """The semantic step: a cached question of the same scope whose cosine clears the threshold and which has
        the same question terms as ``text`` (unless ``semantic_same_terms`` is off); the closest few are tried."""
        if not (lookup.semantic and lookup.index and lookup.scope):
            return lookup
        usable = [(i, v) for i, v in lookup.index if v.size == vector.size]
        if not usable:
            return lookup
        cosines = np.stack([v for _, v in usable]).astype(np.float32) @ _unit(vector)
        terms = question_terms(text) if self.settings.semantic_same_terms else None
        for best in np.argsort(-cosines)[:SEMANTIC_CANDIDATES]:
            if float(cosines[best]) < self.settings.semantic_threshold:
                break
            try:
                raw = self.store.get(lookup.scope, usable[int(best)][0])
            except RedisBypassed:
                return Lookup("bypassed")
            data = self._entry(raw, tenant)
            if data is not None and (terms is None or data.get("terms") == terms):
                return Lookup("hit-semantic", data["answer"], lookup.scope, lookup.entry_id)
        return lookup

    def put(self, lookup: Lookup, tenant: Tenant, vector: np.ndarray | None, answer: dict[str, Any],
            text: str = "") -> None:
        """Store a fresh ``ok`` answer under the scope read *before* it was computed (see ``generation.py``)."""
        if lookup.scope is None:
            return
        value = json.dumps({"tenant": tenant.id, "terms": question_terms(text), "answer": answer},
                           separators=(",", ":")).encode()
        stored = _unit(vector) if vector is not None and lookup.semantic else np.empty(0, dtype=np.float32)
        try:
            self.store.put(lookup.scope, lookup.entry_id, stored, value)
        except RedisBypassed:
            pass   # the answer goes out regardless; the link already logged and counted the error

    @classmethod
    def _decode(cls, raw: bytes | None, tenant: Tenant) -> dict[str, Any] | None:
        data = cls._entry(raw, tenant)
        return None if data is None else data["answer"]

    @staticmethod
    def _entry(raw: bytes | None, tenant: Tenant) -> dict[str, Any] | None:
        if raw is None:
            return None
        data = json.loads(raw)
        # Defence in depth: the scope already contains the tenant, so this never fails unless keys were tampered with.
        return data if data.get("tenant") == tenant.id else None


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / (np.linalg.norm(v) + 1e-12)
