"""What context assembly needs to know about a chunk before any query: counted once at ingest, read from the payload.

Packing a head of chunks under a budget counts every chunk's tokens, splits
it into sentences and counts each sentence (a chunk over its passage cap or
the room left gives its best sentences). None of that depends on the query,
and a server answering varied questions meets most chunks for the first
time (the process caches barely hit; ``fathom bench context``), so it is done
once per chunk at ingest, with the tokenizer configured then
(``settings.context.tokenizer``), and stored in the chunk's payload under
``context_facts``.

At query time the facts are only used when they are certain to equal what
assembly would compute itself: the tokenizer's ``identity`` (name plus
version or vocabulary hash) is the one that counted them, the facts'
``version`` is this module's (bump ``FACTS_VERSION`` when the sentence rule in
``fathom/retrieval/sentences.py`` or the splitting in
``sentence_spans`` changes), and the spans lie inside the text.
Anything else - an index built before facts existed, another tokenizer
configured since, a malformed payload - and the chunk is counted and split as
before: slower, never different.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fathom.retrieval.context.tokens import PromptTokenizer
from fathom.retrieval.sentences import sentence_spans

FACTS_VERSION = 1
PAYLOAD_KEY = "context_facts"


@dataclass(frozen=True, slots=True)
class ChunkFacts:
    """A chunk's token count and sentences (start, end, tokens; offsets into the chunk text), by one tokenizer.

    ``leads``: for a tokenizer that ``splits_at_spaces``, the tokens of each sentence after the first together with
    the space before it (``text[end of the previous one:end]``): a run of sentences then counts as the first one's
    tokens plus the others' leads, wherever ``tokens.seam`` holds between them. Empty for other tokenizers (and in
    facts stored before leads existed: those runs are counted).
    """

    tokenizer: str
    tokens: int
    sentences: tuple[tuple[int, int, int], ...]
    leads: tuple[int, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        out = {"v": FACTS_VERSION, "tokenizer": self.tokenizer, "tokens": self.tokens,
               "sentences": [list(s) for s in self.sentences]}
        if self.leads:
            out["leads"] = list(self.leads)
        return out

    @classmethod
    def from_payload(cls, raw: Any) -> "ChunkFacts | None":
        """The facts stored at ingest, or None when absent, of another version, or malformed."""
        if not isinstance(raw, Mapping) or raw.get("v") != FACTS_VERSION:
            return None
        try:
            sents = tuple((int(s), int(e), int(t)) for s, e, t in raw["sentences"])
            leads = tuple(int(n) for n in raw.get("leads") or ())
            return cls(str(raw["tokenizer"]), int(raw["tokens"]), sents, leads)
        except (KeyError, TypeError, ValueError):
            return None

    def applies(self, text: str, tokenizer: PromptTokenizer) -> bool:
        """These facts are the ones assembly would compute for ``text`` with ``tokenizer``."""
        if self.tokenizer != tokenizer.identity or (self.leads and len(self.leads) != len(self.sentences) - 1):
            return False
        end = 0
        for s, e, _ in self.sentences:
            if s < end or e <= s:
                return False
            end = e
        return end <= len(text)


def chunk_facts(text: str, tokenizer: PromptTokenizer) -> ChunkFacts:
    """Count ``text`` and each of its sentences (as assembly splits them) with ``tokenizer``."""
    spans = sentence_spans(text, 0, len(text))
    leads = tuple(tokenizer.count(text[a[1]:b[1]]) for a, b in zip(spans, spans[1:])) \
        if tokenizer.splits_at_spaces else ()
    return ChunkFacts(tokenizer.identity, tokenizer.count(text),
                      tuple((s, e, tokenizer.count(text[s:e])) for s, e in spans), leads)
