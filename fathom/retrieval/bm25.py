"""BM25 as Qdrant sparse vectors.

Qdrant scores a sparse query against a sparse document vector as
``sum(q_i * d_i * idf_i)`` over shared indices when the vector has the IDF
modifier. We split BM25 accordingly:

* **document side** (this module, at index time): the term-frequency saturation
  ``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``;
* **query side** (this module): weight 1 per distinct query term (repeated
  query terms are counted once, as in Lucene);
* **IDF** (Qdrant, at query time): ``ln((N - df + 0.5) / (df + 0.5) + 1)``,
  computed over an IDF corpus that we restrict to the tenant, so one tenant's
  vocabulary never skews another's weights.

Differences from ``rank_bm25.BM25Okapi`` (checked in tests/unit/retrieval/test_bm25.py):
BM25Okapi's IDF is ``ln((N - df + 0.5) / (df + 0.5))`` with negative values
floored to ``epsilon * mean_idf``; Qdrant's (Lucene's) adds 1 inside the log,
so it is always positive and common terms keep a small weight.
``avgdl`` is a per-tenant statistic supplied by the caller (see
``Bm25Stats``); documents written before the average moved keep their old
normalisation until the next reindex.

Term ids are a stable 31-bit hash of the stemmed token, so the vocabulary needs
no shared state between processes.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import Stemmer

# Lucene's classic English stop set plus a few very frequent function words.
# Kept short on purpose: long stop lists hurt recall on scientific text
# ("not", "no" and "against" carry meaning in claims).
STOP_WORDS = frozenset(
    """a an and are as at be but by for if in into is it of on or such that the their then there these
    they this to was will with""".split()
)

_TOKEN_RE = re.compile(r"[^\W_]+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Normalise (NFKC + casefold), split on non-alphanumerics, drop stop words, stem."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return stem_words([w for w in _TOKEN_RE.findall(text) if w not in STOP_WORDS])


def stem_words(words: list[str]) -> list[str]:
    """Snowball stems of already-normalised words (what ``tokenize`` does after splitting)."""
    return _stemmer().stemWords(words)


def stem_word(word: str) -> str:
    """One word's stem (PyStemmer keeps its own cache of recent words, so repeated words cost a lookup)."""
    return _stemmer().stemWord(word)


def term_id(token: str) -> int:
    """Stable 31-bit id for a token (CRC32; collisions are rare and only merge two terms' statistics)."""
    return zlib.crc32(token.encode("utf-8")) & 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class Bm25Params:
    k1: float = 0.9
    b: float = 0.4


class Bm25Encoder:
    """Turns text into BM25 sparse vectors (documents) and term sets (queries)."""

    def __init__(self, params: Bm25Params | None = None):
        self.params = params or Bm25Params()

    def document_length(self, text: str) -> int:
        return len(tokenize(text))

    def encode_document(self, text: str, avgdl: float) -> SparseVector:
        """Saturated term frequencies for one document, normalised by ``avgdl``."""
        tokens = tokenize(text)
        return self.encode_tokens(tokens, avgdl)

    def encode_tokens(self, tokens: list[str], avgdl: float) -> SparseVector:
        if not tokens:
            return SparseVector([], [])
        k1, b = self.params.k1, self.params.b
        norm = k1 * (1.0 - b + b * len(tokens) / max(avgdl, 1.0))
        weights: dict[int, float] = {}
        for tok, tf in Counter(tokens).items():
            tid = term_id(tok)
            weights[tid] = weights.get(tid, 0.0) + tf * (k1 + 1.0) / (tf + norm)
        indices = sorted(weights)
        return SparseVector(indices, [weights[i] for i in indices])

    def encode_query(self, text: str) -> SparseVector:
        """One unit weight per distinct query term; IDF is applied by the store."""
        ids = sorted({term_id(t) for t in tokenize(text)})
        return SparseVector(ids, [1.0] * len(ids))
