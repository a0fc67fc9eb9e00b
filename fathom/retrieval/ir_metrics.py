"""IR metrics with the same definitions as BEIR / pytrec_eval.

* nDCG@k: gain = grade, discount = 1/log2(rank + 1), ideal from all judged
  relevant documents of the query;
* Recall@k: relevant documents in the top k / all relevant documents;
* MRR@k: 1 / rank of the first relevant document in the top k, else 0.
Averages are over the queries that have at least one relevant document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    dcg = sum(relevant.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    rel = {d for d, g in relevant.items() if g > 0}
    return len(rel & set(ranked[:k])) / len(rel) if rel else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if relevant.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]) -> dict[str, float]:
    """Mean nDCG@10, R@10, R@100 and MRR@10 of a run (query id -> ranked doc ids)."""
    qids = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    if not qids:
        return {"ndcg@10": 0.0, "recall@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    n = len(qids)
    return {
        "ndcg@10": sum(ndcg_at_k(run.get(q, []), qrels[q], 10) for q in qids) / n,
        "recall@10": sum(recall_at_k(run.get(q, []), qrels[q], 10) for q in qids) / n,
        "recall@100": sum(recall_at_k(run.get(q, []), qrels[q], 100) for q in qids) / n,
        "mrr@10": sum(mrr_at_k(run.get(q, []), qrels[q], 10) for q in qids) / n,
    }


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank-with-interpolation percentile (numpy's default 'linear')."""
    if not values:
        return 0.0
    xs = sorted(values)
    pos = (len(xs) - 1) * p / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)
