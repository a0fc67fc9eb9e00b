"""The relevance judge: its models and calibration files, and the judge in the real pipeline on a small SciFact
slice (per-chunk probabilities, answer confidence, a tenant calibration fitted from a golden set by
excluding its evidence, and the explicit ``degraded`` answers when the judge fails or overruns)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fathom.config import Settings
from fathom.retrieval.calibration import Logistic
from fathom.retrieval.guard import DEGRADING, GuardPolicy, Reason, Status
from fathom.retrieval.judge.calibration import JudgeModel, TenantCalibration, TenantCalibrations
from fathom.retrieval.judge.features import ANSWER_FEATURES, CHUNK_FEATURES, HeadChunk
from fathom.ingest.registry import Registry
from fathom.ingest.tenant_files import registry_calibrations
from fathom.retrieval.judge.fit import CalibrationError, calibrate_tenant, fit_tenant
from fathom.retrieval.judge.judge import JudgeError, JudgeInput, JudgeTimeout, RelevanceJudge
from fathom.retrieval.judge.model import LogisticModel
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.retrieval.tenancy import Tenant
from tests.judge_support import mini_beir, private_settings

TENANT = Tenant("acme")


def _head(n: int = 10) -> list[HeadChunk]:
    rng = np.random.default_rng(0)
    return [HeadChunk(f"d{i // 2}", f"chunk {i} about honeybee waggle dances and flowers", 2.0 - 0.1 * i,
                      0.6 - 0.02 * i, rng.normal(size=384).astype(np.float32)) for i in range(n)]


def test_logistic_model_round_trips_and_standardises() -> None:
    m = LogisticModel(("a", "b"), (1.0, 0.0), (2.0, 1.0), (1.0, -1.0), 0.5)
    assert LogisticModel.from_json(json.loads(json.dumps(m.to_json()))) == m
    # z = ((3 - 1) / 2) * 1 + ((2 - 0) / 1) * -1 + 0.5 = -0.5
    assert m.logit(np.array([3.0, 2.0]))[0] == pytest.approx(-0.5)
    assert m.probability(np.array([[3.0, 2.0]]))[0] == pytest.approx(1 / (1 + np.exp(0.5)))
    with pytest.raises(ValueError):
        LogisticModel(("a",), (0.0,), (0.0,), (1.0,), 0.0)


def test_shipped_model_loads_and_names_its_data() -> None:
    model = JudgeModel.load()
    assert model.chunk.features == CHUNK_FEATURES and model.answer.features == ANSWER_FEATURES
    assert model.provenance["split"] == "train" and model.provenance["command"].startswith("fathom judge fit")
    op = model.provenance["operating_point"]
    assert 0 < op["min_chunk_confidence"] < op["min_confidence"] < 1


def test_judge_output_is_calibrated_probabilities_and_topic_gate() -> None:
    judge = RelevanceJudge(JudgeModel.load(), topic=Logistic(31.39, -13.39))
    out = judge.run(JudgeInput(TENANT, "how do honeybees dance", _head()))
    assert len(out.chunk_probability) == 10 and all(0 <= p <= 1 for p in out.chunk_probability)
    assert out.confidence == pytest.approx(out.on_topic * out.evidence) and out.calibration == "default"
    assert out.on_topic == pytest.approx(Logistic(31.39, -13.39)(0.6))
    # An off-topic head (low cosines) gets a near-zero confidence whatever its shape.
    off = [HeadChunk(c.document_id, c.text, c.fused, 0.05, c.vector) for c in _head()]
    assert judge.run(JudgeInput(TENANT, "how do honeybees dance", off)).confidence < 0.01
    with pytest.raises(JudgeError):
        judge.run(JudgeInput(TENANT, "q", []))


def test_tenant_calibrations_are_reread_when_changed_and_a_bad_file_fails_loudly(tmp_path: Path) -> None:
    store = TenantCalibrations(tmp_path)
    assert store.get(TENANT) is None
    answer = LogisticModel(("base_logit", *ANSWER_FEATURES), (0.0,) * 10, (1.0,) * 10, (1.0,) + (0.0,) * 9, 2.0)
    chunk = LogisticModel(("base_logit",), (0.0,), (1.0,), (1.0,), 0.0)
    store.save(TENANT, TenantCalibration(answer, chunk, {"golden": "test"}))
    judge = RelevanceJudge(JudgeModel.load(), tenants=store)
    out = judge.run(JudgeInput(TENANT, "how do honeybees dance", _head()))
    assert out.calibration == "tenant" and out.evidence == pytest.approx(1 / (1 + np.exp(-(out.base_answer_logit + 2))))
    time.sleep(0.01)
    store.store.write(TENANT, "{not json")
    with pytest.raises(JudgeError):        # the operator asked for a calibration: never a silent default
        judge.run(JudgeInput(TENANT, "how do honeybees dance", _head()))
    assert store.delete(TENANT) and judge.run(JudgeInput(TENANT, "q", _head())).calibration == "default"


def test_judge_over_budget_raises_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = TenantCalibrations(tmp_path)
    judge = RelevanceJudge(JudgeModel.load(), tenants=store, budget_ms=5.0)
    monkeypatch.setattr(store, "get", lambda tenant: time.sleep(0.05))     # the fault: a stalled read
    with pytest.raises(JudgeTimeout):
        judge.run(JudgeInput(TENANT, "how do honeybees dance", _head()))


def test_judge_reasons_degrade() -> None:
    assert {Reason.JUDGE_FAILED, Reason.JUDGE_TIMEOUT} <= DEGRADING
    assert Reason.JUDGE_FAILED.value == "judge_failed" and Reason.JUDGE_TIMEOUT.value == "judge_timeout"


def test_fit_tenant_refuses_too_few_examples() -> None:
    from fathom.retrieval.judge.fit import Example

    row = {f: 0.0 for f in ANSWER_FEATURES}
    few = [Example("q", False, 1, row, [{}], [1], 0.0, [0.0]), Example("q", True, 0, row, [{}], [0], 0.0, [0.0])]
    with pytest.raises(CalibrationError, match="at least"):
        fit_tenant(few, JudgeModel.load())


# --- in the real pipeline ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def index(scifact_dir: Path, models_ready: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from fathom.benchmarks.quality import build_index

    root = mini_beir(scifact_dir, tmp_path_factory.mktemp("judge-beir"), queries=24, distractors=60, seed=11)
    settings = private_settings(models_ready, tmp_path_factory.mktemp("judge-home"))
    idx = build_index(root, settings, state_dir=settings.home / "idx", log=lambda _: None)
    yield idx
    idx.close()


@pytest.fixture()
def pipeline(index: Any) -> Any:
    from fathom.retrieval.components import build_pipeline

    return build_pipeline(index.settings, index.store, index.models)


def _golden(index: Any) -> list[tuple[str, tuple[str, ...]]]:
    return [(index.dataset.queries[q], tuple(sorted(rel))) for q, rel in sorted(index.dataset.qrels.items())]


@pytest.mark.slow
def test_pipeline_serves_the_judges_probabilities(index: Any, pipeline: Any) -> None:
    query, expected = _golden(index)[0]
    policy = GuardPolicy(0.0, 0.0)
    res = pipeline.retrieve(RetrievalQuery(index.tenant, query, top_k=5, policy=policy))
    assert res.judge is not None and "judge" in res.timings_ms and res.status is Status.OK
    assert res.confidence == pytest.approx(res.judge.confidence)
    assert [c.confidence for c in res.candidates] == pytest.approx(list(res.judge.chunk_probability[:5]))
    # The same question with its evidence excluded from the search: the judge sees a head without it.
    from fathom.retrieval.store.contract import MetadataFilter

    hidden = pipeline.retrieve(RetrievalQuery(index.tenant, query, top_k=5, policy=policy,
                                              filter=MetadataFilter({}, exclude_documents=expected)))
    assert not {c.hit.document_id for c in hidden.candidates} & set(expected) and hidden.judge is not None
    # A head shorter than the judge's depth (a filter matching one document): no judge, nothing degraded.
    one = pipeline.retrieve(RetrievalQuery(index.tenant, query, top_k=5, policy=policy,
                                           filter=MetadataFilter({"document_id": expected[0]})))
    assert one.judge is None and one.reasons == [] and one.status is Status.OK and "judge" not in one.timings_ms
    # bm25 mode: no judge (its features are those of hybrid heads), the old calibrated signals
    bm25 = pipeline.retrieve(RetrievalQuery(index.tenant, query, top_k=5, mode="bm25", policy=policy))
    assert bm25.judge is None and "judge" not in bm25.timings_ms


@pytest.mark.slow
def test_judge_failure_and_overrun_answer_degraded_never_ok(index: Any, pipeline: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    query, _ = _golden(index)[0]
    policy = GuardPolicy(0.0, 0.0)
    assert pipeline.judge.tenants is not None
    pipeline.judge.tenants.store.write(index.tenant, '{"format": 99}')     # a calibration it cannot read
    try:
        res = pipeline.retrieve(RetrievalQuery(index.tenant, query, policy=policy))
    finally:
        pipeline.judge.tenants.delete(index.tenant)
    assert res.status is Status.DEGRADED and Reason.JUDGE_FAILED in res.reasons and res.judge is None
    assert res.candidates and res.degraded == ["judge_failed"]
    monkeypatch.setattr(pipeline.judge, "budget_ms", 0.001)
    res = pipeline.retrieve(RetrievalQuery(index.tenant, query, policy=policy))
    assert res.status is Status.DEGRADED and res.reasons == [Reason.JUDGE_TIMEOUT] and res.judge is None


@pytest.mark.slow
def test_tenant_calibration_from_its_golden_set(index: Any, pipeline: Any, tmp_path: Path) -> None:
    golden = _golden(index)
    calibration = calibrate_tenant(pipeline, index.tenant, golden)
    ex = calibration.provenance["examples"]
    # Every query asked twice; an ask the judge overran on a busy machine is counted, not silently lost.
    assert ex["asked"] + calibration.provenance["not_judged"] == 2 * len(golden) and ex["asked"] >= len(golden)
    assert 0 < ex["withheld"] <= len(golden) and ex["with_evidence_found"] > 0
    assert pipeline.judge.tenants is not None
    pipeline.judge.tenants.save(index.tenant, calibration)
    try:
        res = pipeline.retrieve(RetrievalQuery(index.tenant, golden[0][0], policy=GuardPolicy(0.0, 0.0)))
        assert res.judge is not None and res.judge.calibration == "tenant"
        other = pipeline.retrieve(RetrievalQuery(Tenant("someone-else"), golden[0][0]))
        assert other.judge is None and other.reasons == [Reason.EMPTY_INDEX]
    finally:
        pipeline.judge.tenants.delete(index.tenant)


@pytest.mark.slow
def test_cli_calibrate_writes_the_tenants_file(index: Any, tmp_path: Path) -> None:
    from fathom.service.cli import build_parser

    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(json.dumps({"query": q, "expected": list(e)}) + "\n" for q, e in _golden(index)))
    settings = index.settings
    live = index.store.live_version(index.tenant)
    index.store.close()        # the command opens the store itself (one owner at a time)
    try:
        args = build_parser().parse_args(["judge", "calibrate", "--tenant", index.tenant.id, "--golden", str(golden)])
        assert args.fn(args, settings) == 0
        registry = Registry(settings.registry)
        try:
            saved = registry_calibrations(registry).get(index.tenant)     # in the registry, for every process
            assert saved is not None and saved.provenance["examples"]["questions"] == len(_golden(index))
            assert saved.provenance["index_version"] == live   # GET /v1/admin/index: current or not
            assert TenantCalibrations(settings.judge_calibration_dir).get(index.tenant) is None   # not a local file
            args = build_parser().parse_args(["judge", "calibrate", "--tenant", index.tenant.id, "--delete"])
            assert args.fn(args, settings) == 0 and registry_calibrations(registry).get(index.tenant) is None
        finally:
            registry.close()
    finally:
        from fathom.retrieval.components import open_store

        index.store = open_store(settings)


@pytest.mark.slow
def test_pseudo_queries_come_from_the_tenants_own_chunks_and_calibrate_like_a_golden_set(index: Any, pipeline: Any) -> None:
    """The measured-not-shipped route (fathom bench guard --calibrate pseudo): real store scroll, real pipeline."""
    from fathom.benchmarks.guard_protocol import drop_calibration, pseudo_calibration
    from fathom.benchmarks.pseudo_queries import tenant_pseudo_golden
    from fathom.retrieval.store.contract import IndexRef

    ref = IndexRef(index.tenant, index.store.live_version(index.tenant))
    texts: dict[str, str] = {}
    for hit in index.store.scroll(ref):
        texts[hit.document_id] = texts.get(hit.document_id, "") + " " + hit.text
    golden = tenant_pseudo_golden(index.store, index.tenant, 30, keep=0.6)
    assert len(golden) == 30 and len({docs for _, docs in golden}) == 30
    for query, (doc,) in golden:
        assert doc in texts and all(w in texts[doc] for w in query.split())
    with pytest.raises(ValueError, match="no live index"):
        tenant_pseudo_golden(index.store, Tenant("nobody"), 5)
    report = pseudo_calibration(30, 0.6)(pipeline, index.store, index.tenant, [])
    try:
        assert report["golden"] == "pseudo" and report["examples"]["asked"] + report["not_judged"] == 60
        res = pipeline.retrieve(RetrievalQuery(index.tenant, golden[0][0], policy=GuardPolicy(0.0, 0.0)))
        assert res.judge is not None and res.judge.calibration == "tenant"
    finally:
        drop_calibration(pipeline, index.tenant)
