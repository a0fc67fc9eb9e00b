"""Plain text, Markdown, HTML, CSV and TSV: decoded here (BOM, declared charset, UTF-8, a guess), then partitioned."""

from __future__ import annotations

import html
import io
import re
from typing import TYPE_CHECKING

from fathom.ingest.normalize import DecodedText, decode_text
from fathom.ingest.parse.base import _Raw

if TYPE_CHECKING:
    from unstructured.documents.elements import Element as UElement


_HTML_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_HTML_TITLE_RE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
# Browsers look for <meta charset> in the first 1024 bytes; allow for long heads.
_HTML_PRESCAN_BYTES = 4096


def _text_raw(elements: list[UElement], decoded: DecodedText) -> _Raw:
    metadata: dict[str, object] = {"encoding": decoded.encoding}
    if decoded.repaired:
        metadata["encoding_repaired"] = True
    return _Raw(elements, metadata=metadata)


def _parse_txt(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.text import partition_text

    decoded = decode_text(data)
    return _text_raw(partition_text(text=decoded.text, metadata_filename=filename), decoded)


def _parse_md(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.md import partition_md

    decoded = decode_text(data)
    return _text_raw(partition_md(text=decoded.text, metadata_filename=filename), decoded)


def _parse_html(data: bytes, filename: str) -> _Raw:
    """HTML decoded here (BOM, then <meta charset>, then UTF-8, then a guess); <title> is the title."""
    from unstructured.partition.html import partition_html

    match = _HTML_CHARSET_RE.search(data[:_HTML_PRESCAN_BYTES])
    decoded = decode_text(data, declared=match.group(1).decode("ascii") if match else None)
    raw = _text_raw(partition_html(text=decoded.text, metadata_filename=filename), decoded)
    title = _HTML_TITLE_RE.search(decoded.text)
    raw.title = " ".join(html.unescape(title.group(1)).split()) if title else None
    return raw


def _parse_csv(data: bytes, filename: str) -> _Raw:
    """Decoded here; pandas then gets UTF-8, which it reads without guessing."""
    from unstructured.partition.csv import partition_csv

    decoded = decode_text(data)
    file = io.BytesIO(decoded.text.encode("utf-8"))
    return _text_raw(partition_csv(file=file, encoding="utf-8", metadata_filename=filename), decoded)


def _parse_tsv(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.tsv import partition_tsv

    decoded = decode_text(data)
    file = io.BytesIO(decoded.text.encode("utf-8"))
    return _text_raw(partition_tsv(file=file, metadata_filename=filename), decoded)
