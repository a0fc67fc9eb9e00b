"""A chunk's vocabulary as a 2,048-bit sketch, made at ingest, so that dedup can rule a pair out without reading it.

Near-duplicate collapse (``dedup``) compares every text packing reaches with
every other document's: about 200 pairs an answer, each a set intersection of
two vocabularies that first had to be split out of the texts. Nearly every
pair is far from a duplicate. The sketch proves that cheaply, and exactly:

* each distinct word (as ``words.words`` splits it) sets bit
  ``crc32(word) mod 2048`` of the mask; ``excess`` is how many words landed on
  a bit another word had already set;
* the words two texts share set bits both masks have, and they occupy at
  least ``shared - excess`` distinct bits of either mask (a subset of a
  vocabulary has no more excess than the whole), so
  ``shared <= popcount(a & b) + min(excess_a, excess_b)``;
* ``dedup.same_text`` needs ``shared >= min(2t / (1 + t), 0.9) * smaller``
  (Jaccard ``t`` or 90 % containment), so a pair whose bound is below that is
  not a duplicate, and its vocabularies are never built.

The bound holds for any superset of a text's vocabulary, so a trimmed
window of a chunk is bounded by the chunk's sketch (``Signatures.within``).
The sketch only ever skips pairs the exact test would reject: what dedup
collapses is unchanged (tests compare both ways on real texts).

Stored in the chunk's payload under ``vocab_sketch`` (344 base64 characters),
whatever the prompt tokenizer; an index built before it existed has none and
is compared exactly, as before. Bump ``SKETCH_VERSION`` whenever the word
split of ``words.words`` or the hash changes.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from fathom.retrieval.context.words import words

SKETCH_VERSION = 1
PAYLOAD_KEY = "vocab_sketch"
BITS = 2048
_BYTES = BITS // 8
_CACHED_WORDS = 100_000


class _WordBits(dict[str, int]):
    """word -> its bit (``1 << crc32 % BITS``), remembered: a query-time sketch (a window a chunk was trimmed to)
    then costs a dictionary lookup a word, all in C (``map``, ``reduce``). Emptied when it holds ``_CACHED_WORDS``."""

    def __missing__(self, word: str) -> int:
        if len(self) >= _CACHED_WORDS:
            self.clear()
        bit = self[word] = 1 << (zlib.crc32(word.encode("utf-8")) % BITS)
        return bit


_WORD_BITS = _WordBits()


@dataclass(frozen=True, slots=True)
class VocabularySketch:
    """``size`` distinct words hashed into ``mask`` (``BITS`` bits); ``excess``: how many fell on a bit another had
    set (what the mask undercounts the vocabulary by)."""

    size: int
    mask: int
    excess: int

    @classmethod
    def of_mask(cls, size: int, mask: int) -> "VocabularySketch":
        return cls(size, mask, size - mask.bit_count())

    @classmethod
    def of_words(cls, vocabulary: Iterable[str]) -> "VocabularySketch":
        distinct = set(vocabulary)
        return cls.of_mask(len(distinct), reduce(or_, map(_WORD_BITS.__getitem__, distinct), 0))

    @classmethod
    def of_text(cls, text: str) -> "VocabularySketch":
        return cls.of_words(words(text))

    def to_payload(self) -> dict[str, Any]:
        return {"v": SKETCH_VERSION, "size": self.size,
                "mask": base64.b64encode(self.mask.to_bytes(_BYTES, "little")).decode("ascii")}

    @classmethod
    def from_payload(cls, raw: Any) -> "VocabularySketch | None":
        """The sketch stored at ingest, or None when absent, of another version, or malformed."""
        if not isinstance(raw, Mapping) or raw.get("v") != SKETCH_VERSION:
            return None
        try:
            packed = base64.b64decode(raw["mask"], validate=True)
            size = int(raw["size"])
        except (KeyError, TypeError, ValueError):
            return None
        if len(packed) != _BYTES or size < 0:
            return None
        sketch = cls.of_mask(size, int.from_bytes(packed, "little"))
        return sketch if sketch.excess >= 0 else None


def share_fewer(a: VocabularySketch, b: VocabularySketch, need: float) -> bool:
    """The two vocabularies (or any subsets of them) certainly share fewer than ``need`` words (module docstring)."""
    return (a.mask & b.mask).bit_count() + (a.excess if a.excess < b.excess else b.excess) < need
