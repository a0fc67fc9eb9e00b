"""How often the empty-context guard says "nothing relevant", on-topic vs off-topic.

On-topic queries are the dataset's judged queries (each has a relevant
document in the corpus): rejecting one is a false alarm. Off-topic queries
(``offtopic_queries.txt``, written for Fathom) have no relevant document:
rejecting one is the guard doing its job. The thresholds were chosen on the
SciFact *train* split (``fathom bench quality --split train``) and are
reported here on whatever split is run.
"""

from __future__ import annotations

from pathlib import Path

from fathom.retrieval.guard import GuardPolicy, Status
from fathom.retrieval.query_pipeline import RetrievalPipeline, RetrievalQuery
from fathom.retrieval.tenancy import Tenant

OFFTOPIC_FILE = Path(__file__).with_name("offtopic_queries.txt")            # for reporting
CALIBRATION_FILE = Path(__file__).with_name("offtopic_calibration.txt")   # for fitting only (calibrate.py)


def offtopic_queries(path: Path = OFFTOPIC_FILE) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [q.strip() for q in lines if q.strip() and not q.startswith("#")]


def rejection_rate(pipeline: RetrievalPipeline, tenant: Tenant, queries: list[str], policy: GuardPolicy,
                   rerank: bool) -> float:
    rejected = 0
    for text in queries:
        res = pipeline.retrieve(RetrievalQuery(tenant, text, top_k=10, rerank=rerank, policy=policy))
        rejected += res.status is Status.NO_RELEVANT_CONTEXT
    return rejected / len(queries) if queries else 0.0


def guard_report(pipeline: RetrievalPipeline, tenant: Tenant, on_topic: list[str], policy: GuardPolicy,
                 rerank: bool) -> dict[str, float]:
    return {
        "on_topic_rejected": round(rejection_rate(pipeline, tenant, on_topic, policy, rerank), 4),
        "off_topic_rejected": round(rejection_rate(pipeline, tenant, offtopic_queries(), policy, rerank), 4),
        "on_topic_queries": len(on_topic),
        "off_topic_queries": len(offtopic_queries()),
    }
