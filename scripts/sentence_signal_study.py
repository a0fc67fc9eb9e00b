"""Would sentence-level signals tell the judge whether the head holds evidence? (issue 14; measured, not shipped)

The judge's features are chunk-level (README "The guard"). A claim is usually stated by one sentence, so this
study asks whether the best *sentence* of the head separates answerable heads from on-topic unanswerable ones
better: the judge's fit protocol (every judged query of the split asked as is and with its judged documents
excluded from the search), and per head, over the sentences of its first ``--depth`` chunks:

* lexical: the largest share of the query's terms (BM25 tokens) in one sentence, and in two consecutive ones;
* dense (``--dense``): the query's MiniLM cosine with each sentence (embedded here, at query time: a serving
  version would need a vector per sentence stored at ingest), its max, the gap from the 5th best, the top-3 mean.

Prints ROC AUC and the share of unanswerable heads rejected at 5 % answerable loss for each signal alone, and for
a logistic blend with the judge's answer features by 5-fold cross-validation (``fathom bench judge-signal``'s
helpers), next to the judge alone::

    FATHOM_INGEST__EMBED_MPNET=false FATHOM_RERANK__KIND=none .venv/bin/python scripts/sentence_signal_study.py \\
        scifact --index .fathom/bench-idx/scifact --dense

(the kept index is one ``fathom bench context --keep-index .fathom/bench-idx`` builds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fathom.benchmarks import context_bench
from fathom.benchmarks.config import data_dir
from fathom.benchmarks.judge_signal import _cross_validated, operating_point
from fathom.benchmarks.quality import build_index
from fathom.config import get_settings
from fathom.retrieval.bm25 import tokenize
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.judge.fit import OPEN
from fathom.retrieval.query_pipeline import RetrievalQuery
from fathom.retrieval.sentences import sentence_spans
from fathom.retrieval.store.contract import MetadataFilter


def _lexical(terms: set[str], sentences: list[str]) -> list[float]:
    tokens = [set(tokenize(s)) for s in sentences]
    share = [len(terms & t) / max(len(terms), 1) for t in tokens] or [0.0]
    pairs = [len(terms & (a | b)) / max(len(terms), 1) for a, b in zip(tokens, tokens[1:])] or [0.0]
    return [max(share), max(pairs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--index", required=True, type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--depth", type=int, default=10)
    ap.add_argument("--dense", action="store_true")
    args = ap.parse_args()
    settings = context_bench.counting_with(get_settings(), "cl100k_base")   # the settings the kept index has
    index = build_index(data_dir() / args.dataset, settings, split=args.split, state_dir=args.index,
                        log=lambda *a: None)
    try:
        pipeline = build_pipeline(index.settings, index.store, index.models)
        labels, judge, lexical, dense = [], [], [], []
        for qid, relevant in sorted(index.dataset.qrels.items()):
            query = index.dataset.queries.get(qid)
            if query is None:
                continue
            terms = set(tokenize(query))
            q = index.models.dense.embed_query(query) if args.dense else None
            for withheld in (False, True):
                flt = MetadataFilter({}, exclude_documents=tuple(sorted(relevant))) if withheld else None
                res = pipeline.retrieve(RetrievalQuery(index.tenant, query, top_k=10, filter=flt, policy=OPEN))
                if res.judge is None:
                    continue
                texts = [c.hit.text for c in res.candidates[:args.depth]]
                sentences = [t[s:e] for t in texts for s, e in sentence_spans(t, 0, len(t))]
                labels.append(int(not withheld))
                judge.append([res.judge.confidence, res.judge.base_answer_logit, *res.judge.answer_features.values()])
                lexical.append(_lexical(terms, sentences))
                if q is not None:
                    v = index.models.dense.embed(sentences or [""])
                    cos = np.sort((v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-12))
                                  @ (q / (np.linalg.norm(q) + 1e-12)))[::-1]
                    dense.append([float(cos[0]), float(cos[0] - cos[min(4, len(cos) - 1)]), float(cos[:3].mean())])
    finally:
        index.close()
    y = np.array(labels)
    jx, lx = np.array(judge), np.array(lexical)

    def point(scores: np.ndarray) -> dict[str, float | None]:
        return operating_point(scores[y == 1], scores[y == 0])

    out = {"dataset": args.dataset, "heads": len(y), "judge (shipped)": point(jx[:, 0]),
           "judge features, 5-fold": point(_cross_validated(jx[:, 1:], y)),
           "best sentence term share": point(lx[:, 0]), "best two sentences term share": point(lx[:, 1]),
           "judge + lexical, 5-fold": point(_cross_validated(np.hstack([jx[:, 1:], lx]), y))}
    if dense:
        dx = np.array(dense)
        out["best sentence cosine"] = point(dx[:, 0])
        out["judge + dense, 5-fold"] = point(_cross_validated(np.hstack([jx[:, 1:], dx]), y))
        out["judge + lexical + dense, 5-fold"] = point(_cross_validated(np.hstack([jx[:, 1:], lx, dx]), y))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
