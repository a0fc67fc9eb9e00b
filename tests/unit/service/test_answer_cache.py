"""The answer cache as a unit (fathom/service/cache/answers.py) over the real in-process backends.

Exact hits, the semantic step and its threshold, scopes (tenant, index version, write generation,
request parameters, settings), and what happens when the backend is bypassed (the one fault, injected
by a store that raises ``RedisBypassed``). The same cache behind HTTP and Redis: tests/api/test_cache.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from fathom.retrieval.tenancy import Tenant
from fathom.service.cache.answers import AnswerCache, AnswerParams, normalise, settings_fingerprint
from fathom.service.cache.cache_backends import MemoryAnswerStore
from fathom.service.cache.generation import MemoryGenerations
from fathom.service.core.config import CacheSettings, Settings
from fathom.service.redis_link import RedisBypassed

A, B = Tenant("alpha"), Tenant("beta")
PARAMS = AnswerParams("hybrid", 5, True, None, 0.5, 0.2)
ANSWER = {"status": "ok", "chunks": [{"id": "c1"}]}


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def cache() -> AnswerCache:
    settings = CacheSettings(semantic_threshold=0.98)
    store = MemoryAnswerStore(cap=settings.max_entries_per_scope, ttl_s=settings.ttl_s, max_scopes=8)
    return AnswerCache(store, MemoryGenerations(), settings, settings_fingerprint(Settings()))


def remember(cache: AnswerCache, tenant: Tenant, text: str, vector: np.ndarray | None, *, version: int = 1,
             params: AnswerParams = PARAMS, answer: dict[str, Any] = ANSWER) -> None:
    miss = cache.lookup(tenant, version, params, text)
    assert miss.outcome == "miss"
    cache.put(miss, tenant, vector, answer, text)


def test_an_exact_repeat_is_a_hit_up_to_unicode_and_whitespace(cache: AnswerCache) -> None:
    remember(cache, A, "How do  bees\tdance?", unit(1, 0, 0))
    hit = cache.lookup(A, 1, PARAMS, "How do bees dance?")
    assert hit.outcome == "hit-exact" and hit.answer == ANSWER
    assert normalise("ｂｅｅｓ  dance") == "bees dance"                 # NFKC folds full-width letters
    assert cache.lookup(A, 1, PARAMS, "how do bees dance?").outcome == "miss"   # case is kept: exact is exact


def test_the_semantic_step_needs_the_threshold(cache: AnswerCache) -> None:
    remember(cache, A, "How do bees dance?", unit(1, 0, 0))
    # Same question terms (stop words and case aside), so the cosine decides.
    miss = cache.lookup(A, 1, PARAMS, "how do the bees dance?")
    assert miss.outcome == "miss" and miss.semantic
    close = cache.match(miss, A, unit(1, 0.1, 0), "how do the bees dance?")           # cosine 0.995
    assert close.outcome == "hit-semantic" and close.answer == ANSWER
    far = cache.match(cache.lookup(A, 1, PARAMS, "how do the bees dance"), A, unit(1, 0.3, 0),
                      "how do the bees dance")                                     # cosine 0.958
    assert far.outcome == "miss" and far.answer is None
    # Over the threshold, but another question (a different term): never served.
    other = cache.match(cache.lookup(A, 1, PARAMS, "How do wasps dance?"), A, unit(1, 0.1, 0), "How do wasps dance?")
    assert other.outcome == "miss"


def test_bm25_mode_has_no_semantic_step(cache: AnswerCache) -> None:
    lexical = AnswerParams("bm25", 5, True, None, 0.5, 0.2)
    remember(cache, A, "waggle dance", None, params=lexical)
    miss = cache.lookup(A, 1, lexical, "waggle dances")
    assert miss.outcome == "miss" and not miss.semantic
    assert cache.match(miss, A, unit(1, 0, 0), "waggle dances").outcome == "miss"


@pytest.mark.parametrize("change", ["tenant", "version", "generation", "params"])
def test_every_part_of_the_scope_separates_answers(cache: AnswerCache, change: str) -> None:
    remember(cache, A, "How do bees dance?", unit(1, 0, 0))
    tenant, version, params = A, 1, PARAMS
    if change == "tenant":
        tenant = B
    elif change == "version":
        version = 2
    elif change == "generation":
        cache.generations.bump(A)                            # a write to the tenant
    else:
        params = AnswerParams("hybrid", 6, True, None, 0.5, 0.2)
    again = cache.lookup(tenant, version, params, "How do bees dance?")
    assert again.outcome == "miss" and again.answer is None
    assert cache.match(again, tenant, unit(1, 0, 0), "How do bees dance?").answer is None     # nor semantically


def test_processes_configured_differently_never_share_entries() -> None:
    base = Settings()
    deeper = base.model_copy(update={"rerank": base.rerank.model_copy(update={"depth": 20})})
    other_ef = base.model_copy(update={"store": base.store.model_copy(update={"hnsw_ef": 64})})
    fingerprints = {settings_fingerprint(s) for s in (base, deeper, other_ef)}
    assert len(fingerprints) == 3
    unrelated = base.model_copy(update={"service": base.service.model_copy(update={"port": 9999})})
    assert settings_fingerprint(unrelated) == settings_fingerprint(base)


class Bypassed(MemoryAnswerStore):
    """The fault: the shared backend is unreachable (the Redis link's breaker is open)."""

    def __init__(self, fail: set[str]) -> None:
        super().__init__(cap=8, ttl_s=60, max_scopes=8)
        self.fail = fail

    def fetch(self, scope: Any, entry_id: str) -> Any:
        if "fetch" in self.fail:
            raise RedisBypassed("redis down")
        return super().fetch(scope, entry_id)

    def put(self, scope: Any, entry_id: str, vector: np.ndarray, value: bytes) -> None:
        if "put" in self.fail:
            raise RedisBypassed("redis down")
        super().put(scope, entry_id, vector, value)


def test_a_bypassed_backend_is_answered_around_never_raised() -> None:
    down = AnswerCache(Bypassed({"fetch"}), MemoryGenerations(), CacheSettings(), "fp")
    lookup = down.lookup(A, 1, PARAMS, "q")
    assert lookup.outcome == "bypassed" and lookup.scope is None
    down.put(lookup, A, unit(1, 0), ANSWER)                # nowhere to store: a no-op, not an error
    flaky = AnswerCache(Bypassed({"put"}), MemoryGenerations(), CacheSettings(), "fp")
    miss = flaky.lookup(A, 1, PARAMS, "q")
    flaky.put(miss, A, unit(1, 0), ANSWER)                  # the answer still goes out; nothing cached
    assert flaky.lookup(A, 1, PARAMS, "q").outcome == "miss"
