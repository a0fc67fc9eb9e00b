"""``fathom bench guard``: does the guard catch the on-topic question the corpus cannot answer?

Protocol, per dataset and seed (issue 14):

1. The tenant is the dataset's whole corpus, ingested through the real ingest path
   (a kept index is reused).
2. The judged queries of the split are shuffled with the seed and cut in two: a
   **golden half** (handed to the tenant as its golden set, for a per-tenant
   calibration; never evaluated) and an **evaluation half**.
3. A random half of the evaluation queries has its evidence removed: every
   document judged relevant to one of them is deleted from the tenant with
   ``IngestPipeline.delete`` (the real path: chunks, BM25 statistics, registry).
4. Three groups are asked through the real pipeline with the settings as given
   (the defaults unless the environment says otherwise):

   * **answerable**: evaluation queries with at least one judged document left;
   * **unanswerable** (on-topic): the removed half, plus any evaluation query
     that lost all its judged documents as a side effect;
   * **off-domain**: another dataset's queries.
5. The deleted documents are ingested again (embeddings from the embedding
   cache), so the next seed starts from the whole corpus.

Reported per group: status mix and rejection rate (``no_relevant_context``);
served nDCG@10 on the answerable group (what the app receives: a rejected
query serves nothing and scores 0; qrels restricted to the documents present);
ROC AUC of ``confidence`` (answerable vs unanswerable, answerable vs
off-domain); a reliability table and the expected calibration error of
``confidence`` on the on-topic queries (answerable + unanswerable) against the
**true label: the context the pipeline judged (its top ``k`` chunks, before
the guard drops any) contains a chunk of a judged-relevant document**; the
trade-off of a confidence threshold (unanswerable rejected vs answerable lost)
and the share rejected at 5 % answerable loss; per-stage latency.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.answer_stats import (
    expected_calibration_error,
    rejected_at_loss,
    reliability,
    roc_auc,
    tradeoff,
)
from fathom.benchmarks.datasets import BeirDataset, load_beir
from fathom.benchmarks.quality import BenchIndex, build_index
from fathom.config import Settings
from fathom.ingest.ingest_pipeline import IngestItem, IngestPipeline
from fathom.ingest.registry import Registry
from fathom.ingest.wiring import build_ingest
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.guard import GuardPolicy, Status
from fathom.retrieval.ir_metrics import ndcg_at_k, percentile
from fathom.retrieval.models.embed_cache import EmbeddingCache
from fathom.retrieval.query_pipeline import RetrievalPipeline, RetrievalQuery
from fathom.retrieval.store.contract import VectorStore
from fathom.retrieval.tenancy import Tenant

Log = Callable[[str], None]
GROUPS = ("answerable", "unanswerable", "off_domain")
# A per-tenant calibration step: (pipeline, store, tenant, golden set as (query, judged document ids)) -> a report.
Calibrate = Callable[[RetrievalPipeline, VectorStore, Tenant, list[tuple[str, tuple[str, ...]]]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class SeedSplit:
    seed: int
    golden: tuple[str, ...]          # query ids of the tenant's golden set (calibration only)
    removed_for: tuple[str, ...]     # evaluation queries whose evidence is deleted
    removed_docs: frozenset[str]
    answerable: tuple[str, ...]
    unanswerable: tuple[str, ...]


def split_queries(qrels: dict[str, dict[str, int]], seed: int, golden_fraction: float = 0.5) -> SeedSplit:
    """The seed's golden / evaluation cut and the evaluation half whose evidence is removed."""
    qids = sorted(qrels)
    rng = random.Random(seed)
    rng.shuffle(qids)
    n_golden = int(round(len(qids) * golden_fraction))
    golden, evaluation = qids[:n_golden], qids[n_golden:]
    removed_for = evaluation[: len(evaluation) // 2]
    removed = frozenset(d for q in removed_for for d in qrels[q])
    unanswerable = [q for q in evaluation if q in removed_for or not (set(qrels[q]) - removed)]
    answerable = [q for q in evaluation if q not in set(unanswerable)]
    return SeedSplit(seed, tuple(golden), tuple(removed_for), removed, tuple(answerable), tuple(unanswerable))


@dataclass(slots=True)
class Asked:
    """One query's answer, reduced to what the report needs."""

    group: str
    qid: str
    status: str
    confidence: float
    context_docs: list[str]          # documents of the judged context (top k chunks, before the guard drops any)
    served_docs: list[str]           # documents of the chunks actually returned
    label: int                       # the judged context holds a judged-relevant document
    reasons: list[str]
    timings_ms: dict[str, float] = field(default_factory=dict)


def _unique(docs: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(docs))


def ask(pipeline: RetrievalPipeline, tenant: Tenant, group: str, qid: str, text: str, relevant: set[str],
        policy: GuardPolicy, top_k: int) -> Asked:
    open_policy = GuardPolicy(min_confidence=0.0, min_chunk_confidence=0.0)
    res = pipeline.retrieve(RetrievalQuery(tenant, text, top_k=top_k, policy=policy))
    # The context the guard judged: the same query under an open policy returns every top-k candidate.
    judged = res if res.candidates and len(res.candidates) >= top_k else \
        pipeline.retrieve(RetrievalQuery(tenant, text, top_k=top_k, policy=open_policy))
    context = _unique([c.hit.document_id for c in judged.candidates])
    served = _unique([c.hit.document_id for c in res.candidates]) if res.status in (Status.OK, Status.DEGRADED) else []
    return Asked(group, qid, res.status.value, float(res.confidence), context, served,
                 int(bool(relevant & set(context))), [r.value for r in res.reasons], dict(res.timings_ms))


def remove_documents(ingest: IngestPipeline, tenant: Tenant, docs: Sequence[str]) -> int:
    return sum(ingest.delete(tenant, d) for d in docs)


def restore_documents(ingest: IngestPipeline, tenant: Tenant, dataset: BeirDataset, docs: frozenset[str]) -> int:
    items = [IngestItem(document_id=d.id, parsed=d.parsed()) for d in dataset.corpus() if d.id in docs]
    report = ingest.ingest(tenant, items, total=len(items))
    return report.count("ok")


def _group_stats(asked: list[Asked], qrels: dict[str, dict[str, int]], present: Callable[[str], bool]) -> dict[str, Any]:
    by = {g: [a for a in asked if a.group == g] for g in GROUPS}
    out: dict[str, Any] = {}
    for g, rows in by.items():
        statuses: dict[str, float] = {}
        for a in rows:
            statuses[a.status] = statuses.get(a.status, 0) + 1
        n = max(len(rows), 1)
        out[g] = {"queries": len(rows), "rejected": round(statuses.get(Status.NO_RELEVANT_CONTEXT.value, 0) / n, 4),
                  "status_mix": {s: round(c / n, 4) for s, c in sorted(statuses.items())},
                  "mean_confidence": round(float(np.mean([a.confidence for a in rows])) if rows else 0.0, 4)}
    served, context = [], []
    for a in by["answerable"]:
        rel = {d: g for d, g in qrels[a.qid].items() if present(d)}
        served.append(ndcg_at_k(a.served_docs, rel, 10))
        context.append(ndcg_at_k(a.context_docs, rel, 10))
    conf = {g: [a.confidence for a in rows] for g, rows in by.items()}
    on_topic = by["answerable"] + by["unanswerable"]
    out["ndcg@10_served"] = round(float(np.mean(served)), 4) if served else None
    out["ndcg@10_context"] = round(float(np.mean(context)), 4) if context else None
    out["auc_unanswerable"] = _round(roc_auc(conf["answerable"], conf["unanswerable"]))
    out["auc_off_domain"] = _round(roc_auc(conf["answerable"], conf["off_domain"]))
    out["ece"] = _round(expected_calibration_error([a.confidence for a in on_topic], [a.label for a in on_topic]))
    out["context_has_evidence"] = round(float(np.mean([a.label for a in by["answerable"]])), 4) if by["answerable"] else None
    out["at_5pct_answerable_loss"] = rejected_at_loss(conf["answerable"], conf["unanswerable"], 0.05)
    return out


def _round(x: float | None, n: int = 4) -> float | None:
    return None if x is None else round(x, n)


def _latency(asked: list[Asked]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = {}
    for a in asked:
        for name, ms in a.timings_ms.items():
            stages.setdefault(name, []).append(ms)
    return {name: {"p50_ms": round(percentile(v, 50), 3), "p95_ms": round(percentile(v, 95), 3)}
            for name, v in sorted(stages.items())}


SUMMARY_KEYS = ("answerable_rejected", "unanswerable_rejected", "off_domain_rejected", "auc_unanswerable",
                "auc_off_domain", "ece", "ndcg@10_served")


def _flat(stats: dict[str, Any]) -> dict[str, Any]:
    return {"answerable_rejected": stats["answerable"]["rejected"],
            "unanswerable_rejected": stats["unanswerable"]["rejected"],
            "off_domain_rejected": stats["off_domain"]["rejected"],
            "auc_unanswerable": stats["auc_unanswerable"], "auc_off_domain": stats["auc_off_domain"],
            "ece": stats["ece"], "ndcg@10_served": stats["ndcg@10_served"]}


def run_dataset(index: BenchIndex, off_domain: dict[str, str], seeds: Sequence[int], *, settings: Settings,
                calibrate: Calibrate | None = None, golden_fraction: float = 0.5, top_k: int = 10,
                log: Log = print) -> dict[str, Any]:
    """Every seed on one kept index; the index is whole again afterwards."""
    dataset, tenant = index.dataset, index.tenant
    qrels = {q: rel for q, rel in dataset.qrels.items() if q in dataset.queries}
    registry = Registry(index.settings.registry)
    cache = EmbeddingCache(settings.home.resolve() / "cache" / "embeddings.sqlite")
    ingest = build_ingest(index.settings, index.store, registry, index.models, cache=cache)
    policy = GuardPolicy(settings.guard.min_confidence, settings.guard.min_chunk_confidence)
    per_seed, pooled = [], []
    try:
        for seed in seeds:
            split = split_queries(qrels, seed, golden_fraction)
            pipeline = build_pipeline(index.settings, index.store, index.models)
            t0 = time.perf_counter()
            removed = remove_documents(ingest, tenant, sorted(split.removed_docs))
            t_remove = time.perf_counter() - t0
            try:
                calibration: dict[str, Any] | None = None
                if calibrate is not None:
                    golden = [(dataset.queries[q], tuple(sorted(qrels[q]))) for q in split.golden]
                    t0 = time.perf_counter()
                    calibration = calibrate(pipeline, index.store, tenant, golden)
                    calibration["seconds"] = round(time.perf_counter() - t0, 2)
                for text in list(off_domain.values())[:5]:     # warm-up: first runs allocate ORT buffers
                    pipeline.retrieve(RetrievalQuery(tenant, text, top_k=top_k, policy=policy))
                asked: list[Asked] = []
                for group, ids in (("answerable", split.answerable), ("unanswerable", split.unanswerable)):
                    for q in ids:
                        asked.append(ask(pipeline, tenant, group, q, dataset.queries[q],
                                         set(qrels[q]) - split.removed_docs, policy, top_k))
                for q, text in off_domain.items():
                    asked.append(ask(pipeline, tenant, "off_domain", q, text, set(), policy, top_k))
            finally:
                if calibrate is not None:
                    drop_calibration(pipeline, tenant)
                t0 = time.perf_counter()
                restored = restore_documents(ingest, tenant, dataset, split.removed_docs)
                t_restore = time.perf_counter() - t0
            stats = _group_stats(asked, qrels, lambda d, removed_docs=split.removed_docs: d not in removed_docs)
            row = {"seed": seed, **_flat(stats), "groups": {g: stats[g] for g in GROUPS},
                   "ndcg@10_context": stats["ndcg@10_context"], "context_has_evidence": stats["context_has_evidence"],
                   "at_5pct_answerable_loss": stats["at_5pct_answerable_loss"],
                   "golden_queries": len(split.golden), "removed_documents": removed, "restored_documents": restored,
                   "remove_s": round(t_remove, 2), "restore_s": round(t_restore, 2), "latency": _latency(asked)}
            if calibration is not None:
                row["calibration"] = calibration
            per_seed.append(row)
            pooled.extend(asked)
            log(f"  seed {seed}: " + "  ".join(f"{k} {row[k]}" for k in SUMMARY_KEYS))
    finally:
        cache.close()
        registry.close()
    return summarise(per_seed, pooled, qrels, top_k)


def summarise(per_seed: list[dict[str, Any]], pooled: list[Asked], qrels: dict[str, dict[str, int]],
              top_k: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        values = [r[key] for r in per_seed if r[key] is not None]
        out[key] = round(float(np.mean(values)), 4) if values else None
    conf = {g: [a.confidence for a in pooled if a.group == g] for g in GROUPS}
    on_topic = [a for a in pooled if a.group != "off_domain"]
    out["pooled"] = {
        "queries": {g: len(v) for g, v in conf.items()},
        "auc_unanswerable": _round(roc_auc(conf["answerable"], conf["unanswerable"])),
        "ece": _round(expected_calibration_error([a.confidence for a in on_topic], [a.label for a in on_topic])),
        "reliability": reliability([a.confidence for a in on_topic], [a.label for a in on_topic]),
        "tradeoff": tradeoff(conf["answerable"], conf["unanswerable"]),
        "at_5pct_answerable_loss": rejected_at_loss(conf["answerable"], conf["unanswerable"], 0.05),
        "latency": _latency(pooled),
    }
    out["per_seed"] = per_seed
    out["_confidences"] = conf          # for the plot; dropped from the JSON
    out["top_k"] = top_k
    return out


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per dataset: the confidence distributions of the three groups (pooled over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    bins = np.linspace(0, 1, 21)
    for ax, (name, res) in zip(axes[0], results.items()):
        conf = res["_confidences"]
        for group, colour in zip(GROUPS, ("tab:green", "tab:red", "tab:grey")):
            if conf[group]:
                ax.hist(conf[group], bins=bins, alpha=0.55, color=colour, density=True,
                        label=f"{group} (n={len(conf[group])})")
        ax.set_title(f"{name}: AUC {res['auc_unanswerable']}, ECE {res['ece']}")
        ax.set_xlabel("confidence")
        ax.set_ylabel("density")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def format_report(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| dataset | answerable rejected | unanswerable rejected | off-domain rejected | AUC unanswerable | "
             "AUC off-domain | ECE | nDCG@10 served | unanswerable rejected at 5 % answerable loss |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        at5 = r["pooled"]["at_5pct_answerable_loss"]["unanswerable_rejected"]
        lines.append(f"| {name} | {r['answerable_rejected']} | {r['unanswerable_rejected']} | {r['off_domain_rejected']} "
                     f"| {r['auc_unanswerable']} | {r['auc_off_domain']} | {r['ece']} | {r['ndcg@10_served']} | {at5} |")
    for name, r in results.items():
        lines += ["", f"**{name}** per seed:", "", "| seed | " + " | ".join(SUMMARY_KEYS) + " |",
                  "|---|" + "---|" * len(SUMMARY_KEYS)]
        for row in r["per_seed"]:
            lines.append(f"| {row['seed']} | " + " | ".join(str(row[k]) for k in SUMMARY_KEYS) + " |")
        lines += ["", "reliability (on-topic, pooled): confidence bin -> n, mean confidence, observed", ""]
        lines += [f"  {b['bin']}: {b['n']}, {b['mean_confidence']}, {b['observed']}" for b in r["pooled"]["reliability"]]
        lines += ["", "trade-off (threshold: answerable lost / unanswerable rejected):",
                  "  " + ", ".join(f"{t['threshold']:.2f}: {t['answerable_lost']:.3f}/{t['unanswerable_rejected']:.3f}"
                                   for t in r["pooled"]["tradeoff"])]
        lat = r["pooled"]["latency"]
        lines += ["", "stage latency P50/P95 ms: " + ", ".join(f"{k} {v['p50_ms']}/{v['p95_ms']}" for k, v in lat.items())]
    return "\n".join(lines)


def golden_calibration(pipeline: RetrievalPipeline, store: VectorStore, tenant: Tenant,
                       golden: list[tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
    """The per-tenant calibration a tenant gets from its golden set (``fathom judge calibrate``), saved where
    the pipeline's judge reads it; :func:`drop_calibration` removes it after the seed."""
    from fathom.retrieval.judge.fit import calibrate_tenant

    return _save(pipeline, tenant, calibrate_tenant(pipeline, tenant, golden))


def pseudo_calibration(queries: int, keep: float) -> Calibrate:
    """What a tenant without a golden set would get from its corpus alone (``pseudo_queries.py``; measured, not
    shipped): pseudo-queries cut from the corpus as the tenant holds it this seed (evidence already removed),
    fitted like a golden set; the golden half is not used."""
    from fathom.benchmarks.pseudo_queries import tenant_pseudo_golden
    from fathom.retrieval.judge.fit import calibrate_tenant

    def calibrate(pipeline: RetrievalPipeline, store: VectorStore, tenant: Tenant,
                  golden: list[tuple[str, tuple[str, ...]]]) -> dict[str, Any]:
        t0 = time.perf_counter()
        pseudo = tenant_pseudo_golden(store, tenant, queries, keep=keep)
        sampled = round(time.perf_counter() - t0, 2)
        return _save(pipeline, tenant, calibrate_tenant(pipeline, tenant, pseudo, provenance={
            "golden": "pseudo", "pseudo_queries": len(pseudo), "keep": keep, "sample_s": sampled}))

    return calibrate


def _save(pipeline: RetrievalPipeline, tenant: Tenant, calibration: Any) -> dict[str, Any]:
    judge = pipeline.judge
    if judge is None or judge.tenants is None:
        raise ValueError("--calibrate needs the relevance judge (FATHOM_JUDGE__ENABLED)")
    judge.tenants.save(tenant, calibration)
    return dict(calibration.provenance)


def drop_calibration(pipeline: RetrievalPipeline, tenant: Tenant) -> None:
    if pipeline.judge is not None and pipeline.judge.tenants is not None:
        pipeline.judge.tenants.delete(tenant)


def run_guard_bench(datasets: Sequence[Path], settings: Settings, *, seeds: Sequence[int], split: str = "test",
                    keep_index: Path | None = None, off_domain: Path | None = None,
                    calibrate: Calibrate | None = None, golden_fraction: float = 0.5, log: Log = print) -> dict[str, Any]:
    """Each dataset's tenant, with every other dataset's queries (or ``off_domain``'s) as its off-domain group."""
    if len(datasets) < 2 and off_domain is None:
        raise ValueError("off-domain queries come from another dataset: give two datasets or --off-domain")
    results: dict[str, Any] = {}
    for path in datasets:
        others = [off_domain] if off_domain is not None else [p for p in datasets if p != path]
        off: dict[str, str] = {}
        for other in others:
            ds = load_beir(other, split)
            off.update({f"{ds.name}:{q}": t for q, t in ds.judged_queries.items()})
        log(f"{path.name}: indexing (a kept index is reused)")
        index = build_index(path, settings, split=split, log=log,
                            state_dir=keep_index / path.name if keep_index is not None else None)
        try:
            results[path.name] = run_dataset(index, off, seeds, settings=settings, calibrate=calibrate,
                                             golden_fraction=golden_fraction, log=log)
        finally:
            index.close()
    return results
