"""BM25 as Qdrant sparse vectors, checked against rank_bm25 on real SciFact text.

Formula differences (documented in fathom/retrieval/bm25.py):
* IDF: Qdrant uses ln((N - df + 0.5)/(df + 0.5) + 1); BM25Okapi uses
  ln((N - df + 0.5)/(df + 0.5)) with negative values floored at
  epsilon * mean(idf). The two orderings agree except where very common terms
  (df > N/2) matter.
* Both use the same tf saturation with k1, b and avgdl; we pass BM25Okapi the
  same tokens, k1 and b.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections import Counter

import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from fathom.benchmarks.datasets import load_beir
from fathom.retrieval.bm25 import Bm25Encoder, Bm25Params, term_id, tokenize
from fathom.retrieval.store.contract import ChunkPoint, IndexLayout, IndexRef, SearchRequest
from fathom.retrieval.store.edge_store import EdgeStore
from fathom.retrieval.tenancy import Tenant

N_DOCS = 1500
N_QUERIES = 100


def test_tokenizer_normalises_stems_and_drops_stop_words():
    assert tokenize("The Running DOGS of Ｔｏｋｙｏ!") == ["run", "dog", "tokyo"]
    assert tokenize("Café") == tokenize("Cafe\u0301")   # NFKC folds the combining accent
    assert tokenize("the and of") == []


def test_query_vector_counts_each_term_once():
    q = Bm25Encoder().encode_query("cancer cancer risk")
    assert len(q) == 2 and q.values == [1.0, 1.0]


def test_document_weights_follow_bm25_saturation():
    p = Bm25Params(k1=0.9, b=0.4)
    doc = Bm25Encoder(p).encode_document("cells cells cells divide", avgdl=8.0)
    weights = dict(zip(doc.indices, doc.values))
    dl = 4
    expected = 3 * (p.k1 + 1) / (3 + p.k1 * (1 - p.b + p.b * dl / 8.0))
    assert weights[term_id("cell")] == pytest.approx(expected)


@pytest.fixture(scope="module")
def scifact_sample(scifact_dir):
    ds = load_beir(scifact_dir)
    relevant = {d for q in ds.qrels.values() for d in q}
    docs = [d for d in ds.corpus() if d.id in relevant]
    docs += list(itertools.islice((d for d in ds.corpus() if d.id not in relevant), N_DOCS - len(docs)))
    queries = dict(itertools.islice(sorted(ds.judged_queries.items()), N_QUERIES))
    return docs[:N_DOCS], queries


def test_top10_matches_rank_bm25_on_scifact(tmp_path, scifact_sample):
    docs, queries = scifact_sample
    params = Bm25Params(k1=0.9, b=0.4)
    enc = Bm25Encoder(params)
    tokens = [tokenize(f"{d.title}\n{d.text}") for d in docs]
    avgdl = float(np.mean([len(t) for t in tokens]))
    store = EdgeStore(tmp_path)
    tenant = Tenant("bm25-check")
    ref = IndexRef(tenant, 1)
    store.create_index(ref, IndexLayout(dense_dim=4, bm25_avgdl=avgdl))
    rng = np.random.default_rng(0)
    store.upsert(ref, [ChunkPoint(id=str(uuid.uuid4()), dense=rng.random(4), sparse=enc.encode_tokens(t, avgdl),
                                  payload={"tenant_id": tenant.id, "document_id": d.id, "text": ""})
                       for d, t in zip(docs, tokens)])
    store.activate(ref)
    okapi = BM25Okapi(tokens, k1=params.k1, b=params.b)
    ids = [d.id for d in docs]

    # Our exact formula (Lucene IDF) recomputed independently, to separate "engine bug" from "formula difference".
    df = Counter(t for doc in tokens for t in set(doc))
    n = len(tokens)

    def lucene_scores(q_terms: list[str]) -> np.ndarray:
        out = np.zeros(n)
        for i, doc in enumerate(tokens):
            tf = Counter(doc)
            norm = params.k1 * (1 - params.b + params.b * len(doc) / avgdl)
            out[i] = sum(math.log((n - df[t] + 0.5) / (df[t] + 0.5) + 1) * tf[t] * (params.k1 + 1) / (tf[t] + norm)
                         for t in set(q_terms) if t in tf)
        return out

    overlap_okapi, exact_formula = [], 0
    for text in queries.values():
        q = tokenize(text)
        hits = store.search(SearchRequest(tenant=tenant, mode="bm25", limit=10, sparse=enc.encode_query(text)))
        ours = [h.document_id for h in hits]
        okapi_top = [ids[i] for i in np.argsort(-okapi.get_scores(q), kind="stable")[:10]]
        overlap_okapi.append(len(set(ours) & set(okapi_top)) / 10)
        lucene = lucene_scores(q)
        # Same ids, allowing ties at the cut-off.
        tenth = np.sort(lucene)[-10]
        if all(lucene[ids.index(d)] >= tenth - 1e-6 for d in ours):
            exact_formula += 1
        scores = {h.document_id: h.score for h in hits}
        for d, s in scores.items():
            assert s == pytest.approx(lucene[ids.index(d)], rel=1e-4)
    assert exact_formula == len(queries), "engine scores differ from the Lucene-IDF BM25 formula"
    assert np.mean(overlap_okapi) >= 0.9, f"mean top-10 overlap with BM25Okapi {np.mean(overlap_okapi):.3f}"
