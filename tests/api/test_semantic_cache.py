"""The semantic answer cache never answers a different question (the issue's accounts 55501847 / 55501848).

Over real HTTP with the in-process answer cache on: a question that differs from a cached one in a number is
not a semantic hit, even at cosine >= 0.98, and gets the answer the service computes for it; a question that
differs only in case, punctuation or articles still is. Then the labelled pairs of ``fathom bench cache``
(fathom/benchmarks/cache_pairs.json): with the question-terms check no near-miss pair is served (0 wrong
answers) while the cosine alone serves some of them, so the fixture does catch the old behaviour.
"""

from __future__ import annotations

import numpy as np
import pytest

from fathom.benchmarks.cache_bench import run_cache_bench
from fathom.retrieval.stages import EmbedQuery
from fathom.service.cache.answers import question_terms
from tests.hardening_support import serving
from tests.support import Keys, client

DOCS = [{"id": "acct/55501847", "text": "Customer account 55501847 was closed for fraud in March; the balance is frozen."},
        {"id": "acct/55501848", "text": "Customer account 55501848 is active and in good standing; statements monthly."}]
Q48 = "What is the status of account 55501848?"
Q47 = "What is the status of account 55501847?"
Q48_AGAIN = "What is status of the account 55501848?"


def test_question_terms_keep_numbers_identifiers_names_and_negations():
    assert question_terms(Q48) != question_terms(Q47)
    assert question_terms(Q48) == question_terms(Q48_AGAIN)
    assert question_terms("Flights from Paris to London") != question_terms("Flights from London to Paris")
    assert question_terms("where flowers are") != question_terms("where flowers aren't")
    assert question_terms("order ORD-7731") != question_terms("order ORD-7713")


def test_a_question_differing_in_a_number_is_not_served_the_cached_answer(tmp_path, base_settings, models_ready):
    keys = Keys().add_tenants(["cachefix"])
    with serving(base_settings, tmp_path / "state", keys, cache={"enabled": True, "semantic": True}) as (url, rt):
        embed = rt.pipeline.stage(EmbedQuery).embed
        cosine = float(np.dot(embed(Q48), embed(Q47)))
        assert cosine >= rt.settings.cache.semantic_threshold, cosine     # the embedding cannot tell them apart
        with client(url) as c:
            assert c.post("/v1/documents", json={"documents": DOCS}, headers=keys.headers("cachefix-admin")).status_code == 200

            def ask(q: str) -> dict:
                r = c.post("/v1/retrieve", json={"query": q, "mode": "hybrid"}, headers=keys.headers("cachefix-app"))
                assert r.status_code == 200, r.text
                return r.json()

            first = ask(Q48)
            assert first["cache"] == "miss"
            other = ask(Q47)
            assert other["cache"] == "miss", "a different account number was served the cached answer"
            again = ask(Q47)        # now its own answer, computed above, comes from the cache
            assert again["cache"] == "hit-exact"
            assert [ch["id"] for ch in other["chunks"]] == [ch["id"] for ch in again["chunks"]]
            para = ask(Q48_AGAIN)
            assert para["cache"] == "hit-semantic"
            assert [ch["id"] for ch in para["chunks"]] == [ch["id"] for ch in first["chunks"]]


@pytest.mark.slow
def test_labelled_pairs_no_wrong_answer_with_the_terms_check(base_settings, models_ready):
    settings = base_settings.model_copy(update={"rerank": base_settings.rerank.model_copy(update={"kind": "none"})})
    result = run_cache_bench(settings)
    guarded, cosine = result["variants"]["same_terms"], result["variants"]["cosine_only"]
    assert guarded["wrong_answers"] == 0 and guarded["near_miss_hit_rate"] == 0.0, guarded
    assert guarded["paraphrase_hit_rate"] > 0.3, guarded
    assert cosine["near_miss_hit_rate"] > 0.0, cosine      # the pairs do catch the cosine-only tier
