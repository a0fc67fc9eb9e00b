"""Pseudo-queries cut from a tenant's own corpus, for ``fathom bench guard --calibrate pseudo``: measured, not shipped.

The question it answers: can a tenant without a golden set get the judge's
per-tenant calibration from its corpus alone? Every sentence is a question its
own document answers and, with that document excluded from the search, an
on-topic question the rest of the corpus (probably) cannot: the two classes
:func:`fathom.retrieval.judge.fit.collect` needs, with nobody labelling
anything. A sentence asked verbatim is far easier than a user's question, so
each pseudo-query keeps only a random share of its words (``keep``), in order.

Measured (README, guard section): it does not work with this generator.
Pseudo-queries find their source 89-100 % of the time, and their top chunk
holds 71-72 % of their terms on average (asked with and without the source;
SciFact and CACM alike); CACM's real questions, asked the same way: 38 %. A calibration fitted on them learns that answerable
questions look like exact matches and rejects 40-85 % of real answerable ones.
The shift that miscalibrates the default judge on CACM is in how its users ask,
not in its corpus, and a corpus cannot show that.

Sampling is bounded: one pass over the tenant's chunks (the store's scroll)
with a reservoir of ``3 * n`` chunks, at most one query per document.
Deterministic for a seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fathom.retrieval.sentences import split_sentences
from fathom.retrieval.store.contract import IndexRef, VectorStore
from fathom.retrieval.tenancy import Tenant

_WORD = re.compile(r"\S+")
_LETTERS = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
MIN_WORDS = 8          # a shorter sentence (a heading, a caption, a reference) makes a query with nothing to find
MAX_WORDS = 60         # a longer one is usually a table or a run-on extraction artefact


@dataclass(frozen=True, slots=True)
class PseudoQuery:
    query: str
    document_id: str


def sample_chunks(chunks: Iterable[tuple[str, str]], k: int, rng: random.Random) -> list[tuple[str, str]]:
    """``k`` of the (document id, text) pairs, uniformly (reservoir sampling: one pass, ``k`` held)."""
    held: list[tuple[str, str]] = []
    for i, item in enumerate(chunks):
        if i < k:
            held.append(item)
            continue
        j = rng.randrange(i + 1)
        if j < k:
            held[j] = item
    rng.shuffle(held)         # the first slots were filled in corpus order
    return held


def _candidates(text: str) -> list[list[str]]:
    """The chunk's sentences that read as prose, as word lists."""
    out = []
    for block in text.split("\n\n"):
        for s, e in split_sentences(block):
            words = _WORD.findall(block[s:e])
            if MIN_WORDS <= len(words) <= MAX_WORDS and len(_LETTERS.findall(block[s:e])) >= MIN_WORDS // 2:
                out.append(words)
    return out


def pseudo_queries(chunks: Iterable[tuple[str, str]], n: int, *, seed: int = 0, keep: float = 0.6) -> list[PseudoQuery]:
    """Up to ``n`` pseudo-queries, one per sampled document, each ``keep`` of a sentence's words (at least 4)."""
    if not 0 < keep <= 1:
        raise ValueError("keep is a share of a sentence's words, in (0, 1]")
    rng = random.Random(seed)
    out: list[PseudoQuery] = []
    seen: set[str] = set()
    for doc_id, text in sample_chunks(chunks, 3 * n, rng):
        if len(out) >= n:
            break
        if doc_id in seen:
            continue
        sentences = _candidates(text)
        if not sentences:
            continue
        words = rng.choice(sentences)
        m = max(4, round(keep * len(words)))
        picked = sorted(rng.sample(range(len(words)), m))
        out.append(PseudoQuery(" ".join(words[i] for i in picked), doc_id))
        seen.add(doc_id)
    return out


def tenant_pseudo_golden(store: VectorStore, tenant: Tenant, n: int, *, seed: int = 0,
                         keep: float = 0.6) -> list[tuple[str, tuple[str, ...]]]:
    """A golden set cut from the tenant's live index: (pseudo-query, (its source document,))."""
    version = store.live_version(tenant)
    if version is None:
        raise ValueError(f"tenant {tenant.id} has no live index")
    chunks = ((hit.document_id, hit.text) for hit in store.scroll(IndexRef(tenant, version)))
    return [(q.query, (q.document_id,)) for q in pseudo_queries(chunks, n, seed=seed, keep=keep)]
