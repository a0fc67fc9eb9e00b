"""Ingest-time chunk facts: counted as assembly counts, stored and read back, and refused whenever not certain."""

from __future__ import annotations

import pytest

from fathom.retrieval.context.facts import FACTS_VERSION, ChunkFacts, chunk_facts
from fathom.retrieval.context.tokens import load_tokenizer
from fathom.retrieval.sentences import sentence_spans

TEXT = ("Honeybee foragers dance on the comb. The waggle run encodes distance (about 1 km per second).\n\n"
        "Colonies swarm in spring. Drones die after mating.")


@pytest.mark.parametrize("name", ["approx", "cl100k_base"])
def test_facts_are_the_tokenizers_counts_of_assemblys_sentences(name):
    tok = load_tokenizer(name)
    facts = chunk_facts(TEXT, tok)
    assert facts.tokenizer == tok.identity and facts.tokens == tok.count(TEXT)
    assert [(s, e) for s, e, _ in facts.sentences] == sentence_spans(TEXT, 0, len(TEXT))
    assert [n for s, e, n in facts.sentences] == [tok.count(TEXT[s:e]) for s, e, _ in facts.sentences]
    assert len(facts.sentences) == 4 and facts.applies(TEXT, tok)
    assert ChunkFacts.from_payload(facts.to_payload()) == facts


def test_facts_not_certain_to_be_right_are_refused():
    approx, cl100k = load_tokenizer("approx"), load_tokenizer("cl100k_base")
    facts = chunk_facts(TEXT, approx)
    assert not facts.applies(TEXT, cl100k)                                  # counted by another tokenizer
    assert not facts.applies(TEXT[:20], approx)                             # spans past the text's end
    assert not ChunkFacts(approx.identity, 3, ((5, 9, 1), (2, 4, 1))).applies(TEXT, approx)   # out of order
    stale = {**facts.to_payload(), "v": FACTS_VERSION + 1}
    for raw in (None, "x", {}, stale, {**facts.to_payload(), "sentences": [[1, 2]]},
                {**facts.to_payload(), "tokens": "many"}):
        assert ChunkFacts.from_payload(raw) is None


def test_leads_are_each_sentence_counted_with_the_space_before_it():
    cl100k, approx = load_tokenizer("cl100k_base"), load_tokenizer("approx")
    facts = chunk_facts(TEXT, cl100k)
    spans = [(s, e) for s, e, _ in facts.sentences]
    assert facts.leads == tuple(cl100k.count(TEXT[a[1]:b[1]]) for a, b in zip(spans, spans[1:]))
    assert ChunkFacts.from_payload(facts.to_payload()) == facts
    assert chunk_facts(TEXT, approx).leads == ()                     # its counts do not add up: none stored
    assert not ChunkFacts(facts.tokenizer, facts.tokens, facts.sentences, facts.leads[:-1]).applies(TEXT, cl100k)
