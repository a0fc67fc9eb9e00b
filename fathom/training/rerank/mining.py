"""Query lists with hard negatives mined by Fathom's own hybrid retriever.

Negatives come from the first stage's top ``depth`` documents for the query:
exactly the passages a reranker must learn to push down at serving time
(random negatives are too easy to teach it anything). Positives are removed by
id and, because corpora contain copies, by near-duplicate text as well.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from fathom.retrieval.rerank.cross_encoder import format_passage
from fathom.training.rerank.data import CorpusRecord, LabelledQuery, ListItem, Miner, QueryList
from fathom.training.rerank.neardup import NearDuplicateFilter
from fathom.training.rerank.pseudo import PseudoQuery

T = TypeVar("T")
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class MiningConfig:
    depth: int = 30                   # first-stage documents kept per query (the reranker's view)
    dedup_threshold: float = 0.5      # shingle overlap at which a negative counts as a copy of a positive


@dataclass(slots=True)
class MiningStats:
    queries: int = 0
    negatives: int = 0
    near_duplicates_dropped: int = 0
    positives_unseen: int = 0         # relevant documents the first stage missed within depth

    def as_dict(self) -> dict[str, int]:
        return {"queries": self.queries, "negatives": self.negatives,
                "near_duplicates_dropped": self.near_duplicates_dropped, "positives_unseen": self.positives_unseen}


def mine_labelled(queries: Sequence[LabelledQuery], records: Mapping[str, CorpusRecord], miner: Miner,
                  cfg: MiningConfig = MiningConfig(), *, kind: str = "qrels", stats: MiningStats | None = None,
                  progress: Progress | None = None) -> list[QueryList]:
    """One list per judged query: its first-stage candidates labelled from the judgements.

    An unjudged candidate that nearly copies a relevant document is dropped
    rather than trusted as a negative.
    """
    stats = stats if stats is not None else MiningStats()
    out = []
    for n, q in enumerate(queries, start=1):
        mined = miner(q.text)[: cfg.depth]
        dup = NearDuplicateFilter([records[d].passage() for d in q.relevant if d in records], cfg.dedup_threshold)
        items = []
        for m in mined:
            passage = format_passage(m.section, m.text)
            label = q.relevant.get(m.doc_id, 0)
            if label <= 0 and dup.is_duplicate(passage):
                stats.near_duplicates_dropped += 1
                continue
            items.append(ListItem(m.doc_id, passage, m.fused_score, label))
        seen = {m.doc_id for m in mined}
        unseen = [records[d].passage() for d in q.relevant if d not in seen and d in records]
        stats.queries += 1
        stats.negatives += sum(i.label <= 0 for i in items)
        stats.positives_unseen += len(unseen)
        out.append(QueryList(q.text, items, kind, unseen))
        if progress:
            progress(n, len(queries))
    return out


def mine_pseudo(queries: Sequence[PseudoQuery], miner: Miner, cfg: MiningConfig = MiningConfig(), *,
                stats: MiningStats | None = None, progress: Progress | None = None) -> list[QueryList]:
    """One list per pseudo-query: its source document is the one positive, in its cut form."""
    stats = stats if stats is not None else MiningStats()
    out = []
    for n, pq in enumerate(queries, start=1):
        dup = NearDuplicateFilter([pq.positive], cfg.dedup_threshold)
        items, found = [], False
        for m in miner(pq.text)[: cfg.depth]:
            if m.doc_id == pq.doc_id:
                items.append(ListItem(m.doc_id, pq.positive, m.fused_score, 1))
                found = True
                continue
            passage = m.text if pq.bare else format_passage(m.section, m.text)
            if dup.is_duplicate(passage):
                stats.near_duplicates_dropped += 1
                continue
            items.append(ListItem(m.doc_id, passage, m.fused_score, 0))
        stats.queries += 1
        stats.negatives += sum(i.label <= 0 for i in items)
        stats.positives_unseen += not found
        out.append(QueryList(pq.text, items, pq.kind, [] if found else [pq.positive]))
        if progress:
            progress(n, len(queries))
    return out


def split_by(items: Sequence[T], key: Callable[[T], Hashable], fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """(train, validation): whole groups go to one side, so validation documents/queries are never trained on."""
    groups = sorted({key(i) for i in items}, key=str)
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, round(len(groups) * fraction))]) if fraction > 0 else set()
    return [i for i in items if key(i) not in held], [i for i in items if key(i) in held]


def training_pairs(lists: Sequence[QueryList], negatives_per_query: int, seed: int) -> list[tuple[str, str, float]]:
    """(query, passage, label) rows: every positive, and a seeded sample of the hard negatives."""
    rng = random.Random(seed)
    rows: list[tuple[str, str, float]] = []
    for ql in lists:
        positives, negatives = ql.positives(), ql.negatives()
        if not positives:
            continue
        rows.extend((ql.query, p, 1.0) for p in positives)
        rows.extend((ql.query, n, 0.0) for n in rng.sample(negatives, min(negatives_per_query, len(negatives))))
    rng.shuffle(rows)
    return rows
