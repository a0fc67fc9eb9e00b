"""The pieces trimming is made of: the guided search for the last fitting word, the ASCII word split, and
sentence scores that do not depend on the order the query's terms come in, and are the same whether a text's
sentences are scored one by one or in one pass."""

from __future__ import annotations

import itertools
import random
import re
import unicodedata

import pytest

from fathom.benchmarks.datasets import load_beir
from fathom.retrieval.context.passages import last_fit, proportional
from fathom.retrieval.context.terms import QueryTerms
from fathom.retrieval.context.words import split_words, words
from fathom.retrieval.sentences import sentence_spans


def _binary(marks: list[int], fits) -> int:
    return last_fit(marks, fits)


def test_guided_search_finds_what_binary_search_finds_for_every_guess():
    rng = random.Random(7)
    for _ in range(400):
        n = rng.randint(0, 40)
        marks = list(range(n))
        cut = rng.randint(-1, n)                   # marks[:cut+1] fit (monotone), cut = -1: none fits
        fits = lambda x, cut=cut: x <= cut         # noqa: E731
        want = min(cut, n - 1) if n else -1
        assert _binary(marks, fits) == want
        for guess in (-5, 0, cut - 1, cut, cut + 1, n - 1, n + 5, rng.randint(-3, n + 3)):
            assert last_fit(marks, fits, guess) == want, (n, cut, guess)


def test_a_close_guess_costs_two_or_three_counts():
    marks = list(range(64))
    calls: list[int] = []

    def fits(x: int) -> bool:
        calls.append(x)
        return x <= 40

    for guess, most in ((40, 2), (39, 3), (41, 2)):
        calls.clear()
        assert last_fit(marks, fits, guess) == 40
        assert len(calls) <= most, (guess, calls)
    calls.clear()
    last_fit(marks, fits)
    assert len(calls) >= 5                          # binary search: ~log2(64)


def test_proportional_guess():
    assert proportional(30, 15, 30) == 14
    assert proportional(30, 30, 30) == 29
    assert proportional(10, 5, 0) == 9              # nothing known: start from the far end


_REGEX_WORD = re.compile(r"[^\W_]+", re.UNICODE)


@pytest.mark.parametrize("text", [
    "Hello, World! It's 3.5 mg/kg (n=12) -- e.g. foo_bar baz\tqux\nquux",
    "ALL-CAPS and CamelCase words; numbers 123,456 and x2y",
    "Ünïcödé text: naïve café, ﬁne ligature, Straße",
    "", "   ", "...",
])
def test_word_split_is_the_regular_expressions(text):
    folded = unicodedata.normalize("NFKC", text).casefold()
    assert words(text) == _REGEX_WORD.findall(folded)
    assert split_words(folded) == _REGEX_WORD.findall(folded)


def test_sentence_scores_do_not_depend_on_the_order_of_the_query_terms():
    """Equal-weight terms make ties that must break by position (earliest sentence first), whatever order the
    terms were summed in: the order of a set of strings changes from process to process."""
    text = "Alpha beta gamma here. Delta beta gamma there. Alpha delta epsilon."
    qt = QueryTerms("alpha beta gamma delta epsilon", [text])
    weights = {"alpha": 0.1, "beta": 0.2, "gamma": 0.3, "delta": 0.1, "epsilon": 0.5}
    seen = set()
    for order in itertools.permutations(weights):
        qt.weights = {t: weights[t] for t in order}
        qt._checks = [(t, w, t[:-1] if len(t) > 3 else t) for t, w in qt.weights.items()]
        qt._memo.clear()
        seen.add(tuple(score for _, _, score in qt.sentences(text)))
    assert len(seen) == 1
    scores = seen.pop()
    assert scores[0] == scores[1]                   # 0.1 + 0.2 + 0.3 both ways round


def _by_sentence(qt: QueryTerms, text: str) -> list[float]:
    return [qt._score(text[s:e]) for s, e in sentence_spans(text, 0, len(text))]


@pytest.mark.parametrize("dataset", ["scifact", "cacm"])
def test_one_pass_scores_equal_sentence_by_sentence_scores_on_real_texts(data_dir, dataset):
    """``QueryTerms._scan`` (each probe searched once in the whole text) gives every sentence the score
    ``_score`` gives it alone, for real questions against the texts a head would hold (a sample of the corpus)."""
    ds = load_beir(data_dir / dataset)
    docs = [f"{d.title}\n\n{d.text}" for d, _ in zip(ds.corpus(), range(3000))]
    rng = random.Random(7)
    compared = 0
    for query in rng.sample(sorted(ds.queries.values()), 40):
        head = rng.sample(docs, 20)
        qt = QueryTerms(query, head)
        for text in head:
            if not text.isascii():
                continue
            scanned = qt._scan(text, sentence_spans(text, 0, len(text)))
            assert scanned == _by_sentence(qt, text), (query, text[:80])
            compared += sum(score > 0 for score in scanned)
    assert compared > 200                            # the sample really scores matching sentences


def test_one_pass_scores_on_edge_cases():
    qt = QueryTerms("studies of cell signalling in cells", ["x"])
    for text in ["Cell cells cellular. Studies studied studying! Signalling, signal_ling and cell-signalling.",
                 "Nothing here matches. Not one word.",
                 "Cellcell cell. STUDIES (of cells) -- a study. Signalled."]:
        spans = sentence_spans(text, 0, len(text))
        assert qt._scan(text, spans) == _by_sentence(qt, text)
    # A word outside every sentence span (or across one's edge) cannot be placed: scored sentence by sentence.
    assert qt._scan("cell study", [(0, 3)]) is None
    assert qt.sentences("cells here. More cells.") == [(0, 11, qt._score("cells here.")),
                                                       (12, 23, qt._score("More cells."))]
