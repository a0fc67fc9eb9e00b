"""Pseudo-queries for a tenant without a golden set (fathom/benchmarks/pseudo_queries.py)."""

from __future__ import annotations

import random
import re

import pytest

from fathom.benchmarks.pseudo_queries import MIN_WORDS, pseudo_queries, sample_chunks

PROSE = ("Regulatory T cells suppress the expansion of autoreactive lymphocytes in the thymus of adult mice. "
         "Short line. Their depletion by antibody treatment caused a marked increase of inflammatory cytokines. "
         "Table 2 3 4 5 6 7 8 9 10 11 12 13")


def _corpus(n: int) -> list[tuple[str, str]]:
    return [(f"d{i // 2}", f"Document {i} reports that {PROSE}") for i in range(n)]


def test_each_query_is_an_ordered_subset_of_one_prose_sentence_of_its_document() -> None:
    corpus = _corpus(200)
    texts: dict[str, str] = {}
    for d, t in corpus:                                                        # two chunks per document
        texts[d] = texts.get(d, "") + " " + t
    out = pseudo_queries(corpus, 40, seed=3, keep=0.5)
    assert len(out) == 40 and len({q.document_id for q in out}) == 40       # one per document
    for q in out:
        words = q.query.split()
        source = texts[q.document_id]
        sentence = next(s for s in re.split(r"(?<=\.) ", source) if all(w in s.split() for w in words))
        it = iter(sentence.split())
        assert all(w in it for w in words)                                   # in order
        assert len(sentence.split()) >= MIN_WORDS                           # never the short line or the table
        assert "Table" not in words and words != ["Short", "line."]
        assert 4 <= len(words) < len(sentence.split())                      # some words dropped


def test_deterministic_per_seed_and_bounded() -> None:
    corpus = _corpus(500)
    assert pseudo_queries(corpus, 30, seed=1) == pseudo_queries(corpus, 30, seed=1)
    assert pseudo_queries(corpus, 30, seed=1) != pseudo_queries(corpus, 30, seed=2)
    assert len(pseudo_queries(corpus[:6], 30)) == 3                          # fewer documents than asked: all of them
    assert pseudo_queries([("d", "Too short.")], 5) == []
    with pytest.raises(ValueError):
        pseudo_queries(corpus, 5, keep=0)


def test_reservoir_is_uniform_enough() -> None:
    rng = random.Random(0)
    hits = {str(i): 0 for i in range(100)}
    for _ in range(2000):
        for d, _ in sample_chunks(((str(i), "") for i in range(100)), 10, rng):
            hits[d] += 1
    assert min(hits.values()) > 100 and max(hits.values()) < 300              # expected 200 each
