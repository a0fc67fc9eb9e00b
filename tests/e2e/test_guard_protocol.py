"""``fathom bench guard`` end to end on a small SciFact *test* slice: evidence removed through the real ingest
path while the groups are asked, the corpus whole again afterwards, every reported key present."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fathom.benchmarks.guard_protocol import GROUPS, SUMMARY_KEYS, run_dataset, split_queries
from fathom.config import Settings
from fathom.retrieval.store.contract import IndexRef, MetadataFilter
from fathom.retrieval.query_pipeline import RetrievalQuery
from tests.judge_support import mini_beir, private_settings

pytestmark = pytest.mark.slow

QUERIES = 16
DISTRACTORS = 40
OFF_DOMAIN = {"o1": "How do I bake sourdough bread at home?", "o2": "Which football club won the 1998 cup final?"}


@pytest.fixture(scope="module")
def mini(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mini_beir(scifact_dir, tmp_path_factory.mktemp("mini-beir"), queries=QUERIES, distractors=DISTRACTORS)


@pytest.fixture(scope="module")
def bench_settings(models_ready: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return private_settings(models_ready, tmp_path_factory.mktemp("guard-home"))


def test_protocol_removes_evidence_through_ingest_and_restores_it(mini: Path, bench_settings: Settings) -> None:
    from fathom.benchmarks.quality import build_index

    index = build_index(mini, bench_settings, state_dir=bench_settings.home / "idx", log=lambda _: None)
    try:
        ref = IndexRef(index.tenant, index.store.live_version(index.tenant) or 1)
        before = index.store.count(ref)
        qrels = index.dataset.qrels
        split = split_queries(qrels, seed=1)
        seen: dict[str, Any] = {}

        def calibrate(pipeline: Any, store: Any, tenant: Any, golden: list[tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
            # Called while the evidence is out: none of its chunks can be found, by id or by search.
            seen["left"] = sum(index.store.count(ref, document_id=d) for d in split.removed_docs)
            text = index.dataset.queries[split.removed_for[0]]
            res = pipeline.retrieve(RetrievalQuery(tenant, text, top_k=50, policy=pipeline_open()))
            seen["found"] = {c.hit.document_id for c in res.candidates} & split.removed_docs
            seen["golden"] = golden
            # The store's exclusion filter hides a document from the search without deleting it.
            kept = sorted({d for q in split.answerable for d in qrels[q]} - split.removed_docs)[:1]
            flt = MetadataFilter({}, exclude_documents=tuple(kept))
            res = pipeline.retrieve(RetrievalQuery(tenant, text, top_k=50, filter=flt, policy=pipeline_open()))
            seen["excluded"] = {c.hit.document_id for c in res.candidates} & set(kept)
            return {"queries": len(golden)}

        result = run_dataset(index, OFF_DOMAIN, [1], settings=bench_settings, calibrate=calibrate, log=lambda _: None)
        assert seen["left"] == 0 and not seen["found"] and not seen["excluded"]
        assert [q for q, _ in seen["golden"]] == [index.dataset.queries[q] for q in split.golden]
        assert index.store.count(ref) == before            # every removed document is back
        row = result["per_seed"][0]
        assert row["removed_documents"] == len(split.removed_docs) == row["restored_documents"]
        assert {g: row["groups"][g]["queries"] for g in GROUPS} == {
            "answerable": len(split.answerable), "unanswerable": len(split.unanswerable), "off_domain": len(OFF_DOMAIN)}
        for key in SUMMARY_KEYS:
            assert key in result and key in row
        assert 0.0 <= result["auc_unanswerable"] <= 1.0 and 0.0 <= result["ece"] <= 1.0
        assert row["calibration"]["queries"] == len(split.golden)
        assert result["pooled"]["tradeoff"][0]["threshold"] == 0.0 and result["pooled"]["reliability"]
    finally:
        index.close()


def pipeline_open() -> Any:
    from fathom.retrieval.guard import GuardPolicy

    return GuardPolicy(min_confidence=0.0, min_chunk_confidence=0.0)
