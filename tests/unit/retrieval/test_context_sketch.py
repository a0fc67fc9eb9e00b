"""Vocabulary sketches: their bound on shared words is never below the truth, they only ever rule out pairs the exact
test rejects (so dedup collapses the same passages with or without them), they rule out most real pairs, and a
malformed or stale payload is refused."""

from __future__ import annotations

import random

import pytest

from fathom.benchmarks.datasets import load_beir
from fathom.retrieval.context.dedup import Deduplicator, Signature, Signatures, collapse, same_text
from fathom.retrieval.context.sketch import BITS, SKETCH_VERSION, VocabularySketch, share_fewer
from fathom.retrieval.context.types import ContextChunk, Passage
from fathom.retrieval.context.words import words


def _texts(data_dir, dataset: str, n: int = 400) -> list[str]:
    ds = load_beir(data_dir / dataset)
    return [f"{d.title}\n\n{d.text}" for d, _ in zip(ds.corpus(), range(n))]


def _near_copies(rng: random.Random, text: str) -> list[str]:
    """What dedup must catch or tell apart: a reflowed re-post, a changed byline, a piece of it, it inside more."""
    w = text.split()
    half = " ".join(w[: max(1, len(w) // 2)])
    return [" ".join(w).upper(), text + " Reposted by the editors.", half, " ".join(w[len(w) // 3:]),
            text + " " + " ".join(rng.sample(w, min(len(w), 12)))]


def _sketched(text: str) -> Signature:
    return Signature(text, VocabularySketch.of_text(text))


@pytest.mark.parametrize("dataset", ["scifact", "cacm"])
def test_bound_never_below_the_shared_words_and_verdicts_unchanged(data_dir, dataset):
    rng = random.Random(11)
    texts = _texts(data_dir, dataset)
    pool = texts + [c for t in rng.sample(texts, 40) for c in _near_copies(rng, t)]
    ruled_out = same = pairs = 0
    for _ in range(6000):
        a, b = rng.sample(pool, 2)
        va, vb = frozenset(words(a)), frozenset(words(b))
        sa, sb = VocabularySketch.of_words(va), VocabularySketch.of_words(vb)
        assert sa.size == len(va) and sa.excess >= 0
        shared = len(va & vb)
        assert not share_fewer(sa, sb, shared)            # the bound is at least the true count
        for threshold in (0.5, 0.8, 0.95):
            exact = same_text(Signature(a), Signature(b), threshold)
            assert same_text(_sketched(a), _sketched(b), threshold) == exact, (threshold, a[:60], b[:60])
            same += exact
        pairs += 1
        ruled_out += share_fewer(sa, sb, 0.889 * min(sa.size, sb.size))
    assert same > 20                                      # the sample holds real near-duplicates
    assert ruled_out / pairs > 0.9                        # and the sketch rules out nearly every other pair


@pytest.mark.parametrize("dataset", ["scifact", "cacm"])
def test_a_window_bounded_by_its_chunks_sketch_gets_the_exact_verdict(data_dir, dataset):
    """A window trimmed from a chunk is first bounded by the chunk's sketch (a superset of its vocabulary), then by
    its own when that is too loose; either way the verdict is the exact test's."""
    rng = random.Random(5)
    texts = [t for t in _texts(data_dir, dataset) if t.isascii() and len(t.split()) > 30]
    checked = 0
    for _ in range(1500):
        chunk, other = rng.sample(texts, 2)
        w = chunk.split(" ")
        i = rng.randrange(len(w) // 2)
        window = " ".join(w[i:i + rng.randint(5, len(w) - i)])
        if rng.random() < 0.3:                            # a window that other really repeats
            other = window + " " + other[: rng.randint(0, 80)]
        sigs = Signatures()
        sigs.know(chunk, VocabularySketch.of_text(chunk))
        sigs.know(other, VocabularySketch.of_text(other))
        win = sigs.within(window, chunk)
        assert win.outer is not None or win.sketch is not None
        for threshold in (0.5, 0.8):
            assert same_text(win, sigs(other), threshold) == same_text(Signature(window), Signature(other), threshold)
        checked += 1
    assert checked == 1500


def test_a_cut_through_a_word_is_not_bounded_by_the_outer_sketch():
    sigs = Signatures()
    outer = "Alphabet soup tastes good."
    sigs.know(outer, VocabularySketch.of_text(outer))
    inside = sigs.within("phabet soup", outer)            # "phabet" is no word of outer: no outer bound
    assert inside.outer is None and inside.sketch == VocabularySketch.of_text("phabet soup")
    whole = sigs.within("soup tastes", outer)
    assert whole.outer is not None and whole.sketch is None


def test_collapse_and_packing_checks_agree_with_and_without_sketches(data_dir):
    rng = random.Random(3)
    texts = _texts(data_dir, "scifact", 200)
    for _ in range(60):
        head = rng.sample(texts, 12)
        head += [c for t in rng.sample(head, 3) for c in _near_copies(rng, t)[:2]]
        rng.shuffle(head)
        verdicts = []
        for with_sketch in (False, True):
            sigs = Signatures()
            if with_sketch:
                for t in head:
                    sigs.know(t, VocabularySketch.of_text(t))
            dedup = Deduplicator(0.8, sigs)
            found = []
            for i, t in enumerate(head):
                owner = dedup.find(t, f"d{i}")
                found.append(owner)
                if owner is None:
                    dedup.register(t, f"d{i}", i, found=True)
            passages = [Passage(f"d{i}", 1, t, 0, len(t), [_chunk(i, t)], 1.0, 0.9, i) for i, t in enumerate(head)]
            kept, n = collapse(passages, 0.8, sigs, ())
            verdicts.append((found, [p.document_id for p in kept], n))
        assert verdicts[0] == verdicts[1]


def _chunk(i: int, text: str) -> ContextChunk:
    return ContextChunk(f"c{i}", f"d{i}", 1, text, 0, len(text), 0, 1.0, 0.9, i)


def test_payload_round_trip_and_refusals():
    sketch = VocabularySketch.of_text("Honeybee foragers dance on the comb; the comb is wax.")
    raw = sketch.to_payload()
    assert VocabularySketch.from_payload(raw) == sketch and sketch.size == len(set(words(
        "Honeybee foragers dance on the comb; the comb is wax.")))
    assert len(raw["mask"]) == 4 * ((BITS // 8 + 2) // 3)
    too_small = {**raw, "size": 0}
    for bad in (None, "x", {}, {**raw, "v": SKETCH_VERSION + 1}, {**raw, "mask": "!!"}, {**raw, "mask": "AAAA"},
                {**raw, "size": "many"}, too_small):
        assert VocabularySketch.from_payload(bad) is None
