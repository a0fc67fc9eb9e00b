"""``fathom bench cache``: hit rate and wrong-answer rate of the semantic answer-cache tier.

The labelled pairs and their corpus are ``cache_pairs.json`` beside this file (written for it). The corpus is
ingested into a throwaway state folder; for every pair the first question's fresh answer is cached, then the
second question is looked up (exact step, then the semantic step with its own query embedding), in a cache of
its own so pairs never see each other's entries. Per variant:

* ``paraphrase_hit_rate``: semantic hits over paraphrase pairs (what the tier is for);
* ``near_miss_hit_rate``: semantic hits over near-miss pairs (each one served another question's answer);
* ``wrong_answers``: semantic hits that served another question's answer: every hit on a near-miss pair (by
  its label the questions differ), and any hit whose served chunks (ids, in order) are not those of the
  second question's own fresh answer (the pipeline run without cache); as a count and a rate of all pairs.
  ``wrong_top1`` counts the hits whose first document differs from the fresh answer's (the pipeline itself
  may rank the same document first for two near-miss questions, so that one under-counts).

Variants: ``cosine_only`` (the threshold alone: the tier before this change) and ``same_terms`` (the threshold and
the same question terms: the tier as served, ``cache.semantic_same_terms``). The retrieval pipeline is the
configured one (hybrid mode), so the answers are the ones the service would give.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fathom.config import Settings
from fathom.ingest.ingest_pipeline import IngestItem
from fathom.retrieval.guard import GuardPolicy
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.retrieval.stages import EmbedQuery
from fathom.retrieval.tenancy import Tenant
from fathom.service.answering import to_response
from fathom.service.cache.answers import AnswerCache, AnswerParams, settings_fingerprint
from fathom.service.cache.cache_backends import MemoryAnswerStore
from fathom.service.cache.generation import MemoryGenerations
from fathom.service.runtime import Runtime

PAIRS = Path(__file__).with_name("cache_pairs.json")
TENANT = Tenant("cachebench")
VARIANTS = {"cosine_only": False, "same_terms": True}


def _ids(answer: dict[str, Any]) -> list[str]:
    return [c["id"] for c in answer.get("chunks", [])]


def _top1(answer: dict[str, Any]) -> str | None:
    return answer["chunks"][0]["document_id"] if answer["chunks"] else None


def run_cache_bench(settings: Settings, fixture: Path = PAIRS, threshold: float | None = None) -> dict[str, Any]:
    data = json.loads(fixture.read_text())
    with tempfile.TemporaryDirectory(prefix="fathom-bench-cache-") as tmp:
        bench = settings.model_copy(update={
            "state_dir": Path(tmp) / "state", "registry_url": None, "redis_url": None,
            "cache": settings.cache.model_copy(update={"enabled": False}),
            "ingest": settings.ingest.model_copy(update={"embed_mpnet": settings.rerank.kind == "mpnet"})})
        rt = Runtime.open(bench)
        try:
            report = rt.ingest.ingest(TENANT, [IngestItem(d["id"], text=d["text"]) for d in data["corpus"]])
            assert report.count("failed") == 0, report.summary()
            return _measure(rt, data["pairs"], threshold or settings.cache.semantic_threshold, settings)
        finally:
            rt.close()


def _measure(rt: Runtime, pairs: list[dict[str, str]], threshold: float, settings: Settings) -> dict[str, Any]:
    policy = GuardPolicy(settings.guard.min_confidence, settings.guard.min_chunk_confidence)
    questions = sorted({q for p in pairs for q in (p["a"], p["b"])})
    embed = rt.pipeline.stage(EmbedQuery).embed
    vectors = {q: np.asarray(embed(q), dtype=np.float32) for q in questions}
    fresh = {}
    for q in questions:
        result = rt.pipeline.retrieve(RetrievalQuery(tenant=TENANT, text=q, top_k=5, mode="hybrid", rerank=True,
                                                     filter=None, policy=policy, deadline=None,
                                                     dense=vectors[q]))
        fresh[q] = to_response(result, "").model_dump(exclude={"request_id", "timings_ms", "cache"})
    version = rt.store.live_version(TENANT)
    params = AnswerParams("hybrid", 5, True, None, policy.min_confidence, policy.min_chunk_confidence)
    out: dict[str, Any] = {"threshold": threshold, "pairs": len(pairs),
                           "paraphrase_pairs": sum(p["label"] == "paraphrase" for p in pairs),
                           "near_miss_pairs": sum(p["label"] == "near_miss" for p in pairs), "variants": {}}
    rows = []
    for p in pairs:
        a, b = p["a"], p["b"]
        cos = float(vectors[a] @ vectors[b] / (np.linalg.norm(vectors[a]) * np.linalg.norm(vectors[b]) + 1e-12))
        row: dict[str, Any] = {**p, "cos": round(cos, 4), "fresh_status_a": fresh[a]["status"], "fresh_status_b": fresh[b]["status"], "fresh_top1_a": _top1(fresh[a]),
                               "fresh_top1_b": _top1(fresh[b])}
        for name, same_terms in VARIANTS.items():
            cache = AnswerCache(MemoryAnswerStore(cap=16, ttl_s=600, max_scopes=4), MemoryGenerations(),
                                settings.cache.model_copy(update={"enabled": True, "semantic": True,
                                                                  "semantic_threshold": threshold,
                                                                  "semantic_same_terms": same_terms}),
                                settings_fingerprint(settings))
            first = cache.lookup(TENANT, version, params, a)
            if fresh[a]["status"] == "ok":
                cache.put(first, TENANT, vectors[a], fresh[a], a)
            second = cache.lookup(TENANT, version, params, b)
            if second.answer is None and second.semantic:
                second = cache.match(second, TENANT, vectors[b], b)
            hit = second.outcome == "hit-semantic"
            served = second.answer or {}
            row[name] = {"outcome": second.outcome,
                         "wrong": bool(hit and (p["label"] == "near_miss" or _ids(served) != _ids(fresh[b]))),
                         "wrong_top1": bool(hit and _top1(served) != _top1(fresh[b]))}
        rows.append(row)
    for name in VARIANTS:
        para = [r for r in rows if r["label"] == "paraphrase"]
        near = [r for r in rows if r["label"] == "near_miss"]
        hits = [r for r in rows if r[name]["outcome"] == "hit-semantic"]
        wrong = [r for r in rows if r[name]["wrong"]]
        out["variants"][name] = {
            "paraphrase_hit_rate": round(sum(r[name]["outcome"] == "hit-semantic" for r in para) / max(1, len(para)), 4),
            "near_miss_hit_rate": round(sum(r[name]["outcome"] == "hit-semantic" for r in near) / max(1, len(near)), 4),
            "semantic_hits": len(hits), "wrong_answers": len(wrong),
            "wrong_answer_rate": round(len(wrong) / max(1, len(rows)), 4),
            "wrong_top1": sum(r[name]["wrong_top1"] for r in rows),
            "wrong_pairs": [{"a": r["a"], "b": r["b"], "kind": r["kind"]} for r in wrong],
            "near_miss_hits": [{"a": r["a"], "b": r["b"], "kind": r["kind"]} for r in near
                               if r[name]["outcome"] == "hit-semantic"]}
    out["near_miss_fresh_top1_differs"] = sum(r["fresh_top1_a"] != r["fresh_top1_b"] for r in rows
                                              if r["label"] == "near_miss")
    out["rows"] = rows
    return out


def format_cache(result: dict[str, Any]) -> str:
    lines = [f"semantic cache tier, threshold {result['threshold']}: {result['paraphrase_pairs']} paraphrase and "
             f"{result['near_miss_pairs']} near-miss pairs",
             f"{'variant':<12} {'paraphrase hits':>16} {'near-miss hits':>15} {'wrong answers (of all pairs)':>30}"]
    for name, v in result["variants"].items():
        lines.append(f"{name:<12} {v['paraphrase_hit_rate']:>16.1%} {v['near_miss_hit_rate']:>15.1%} "
                     f"{v['wrong_answers']:>7} ({v['wrong_answer_rate']:.1%}; top-1 differs: {v['wrong_top1']})")
    return "\n".join(lines)
