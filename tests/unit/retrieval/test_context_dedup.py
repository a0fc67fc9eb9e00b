"""Near-duplicate checks of context assembly: symmetric, and never fooled by the pairs the final collapse skips
because packing compared them already."""

from __future__ import annotations

from fathom.retrieval.context.dedup import Deduplicator, Signature, collapse, same_text
from fathom.retrieval.context.types import Passage

SENTENCES = [
    "Honeybee foragers communicate the direction of food with a waggle dance on the comb.",
    "The duration of the waggle run encodes the distance to the flowers.",
    "Colonies swarm in spring when the old queen leaves with half of the workers.",
    "Drones die after mating, and workers expel the rest before winter.",
    "Varroa mites weaken colonies by feeding on the fat body of developing bees.",
]
BOILERPLATE = "Copyright 2024 the authors. Distributed under the terms of the Creative Commons licence."


def _passage(doc: str, text: str, rank: int) -> Passage:
    return Passage(doc, 1, text, 0, len(text), [], score=1.0 / (rank + 1), confidence=0.9, rank=rank)


def test_containment_counts_either_way_round():
    small = Signature.of(BOILERPLATE)
    large = Signature.of(" ".join(SENTENCES) + " " + BOILERPLATE)
    assert same_text(small, large, 0.8) and same_text(large, small, 0.8)
    assert not same_text(Signature.of(SENTENCES[0]), Signature.of(SENTENCES[1]), 0.8)


def test_collapse_compares_what_packing_changed_even_against_compared_texts():
    whole = " ".join(SENTENCES)
    other = BOILERPLATE + " " + SENTENCES[2] + " " + SENTENCES[3]
    dedup = Deduplicator(0.8)
    for key, (doc, text) in enumerate([("a", whole), ("b", other)]):
        assert dedup.find(text, doc) is None   # two different texts: both packed
        dedup.register(text, doc, key, found=True)
    # Packing then trimmed b to two sentences of a: the window is inside a although b's chunk was not.
    window = SENTENCES[2] + " " + SENTENCES[3]
    kept, collapsed = collapse([_passage("a", whole, 0), _passage("b", window, 1)], 0.8, compared=dedup.compared)
    assert collapsed == 1 and [p.document_id for p in kept] == ["a"] and kept[0].duplicates[0].document_id == "b"
    # Two texts packing compared (and kept apart) are not compared again, and both stay.
    kept, collapsed = collapse([_passage("a", whole, 0), _passage("b", other, 1)], 0.8, compared=dedup.compared)
    assert collapsed == 0 and len(kept) == 2


def test_chunk_level_check_finds_a_repost_and_ignores_the_same_document():
    dedup = Deduplicator(0.8)
    text = " ".join(SENTENCES)
    dedup.register(text, "a", 0, found=True)
    assert dedup.find(text.replace("comb.", "comb!"), "b") == 0
    assert dedup.find(text, "a") is None
