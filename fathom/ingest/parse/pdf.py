"""PDF: unstructured's ``fast`` strategy (pdfminer) with the guards it lacks (truncation, encryption, busy pages)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from pypdf import PdfReader
from pypdf.errors import PdfReadError

from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.parse.base import _Raw

if TYPE_CHECKING:
    from unstructured.documents.elements import Element as UElement


_PDF_MAGIC = b"%PDF-"
# pdf spec: the header may follow up to 1 KiB of junk.
_PDF_HEADER_WINDOW = 1024
# unstructured gives up on pages with >10k vector-graphics operators (CAD
# drawings); a handbook page with a diagram can exceed that and still have a
# perfectly good text layer, so the retry accepts far more.
_RELAXED_GRAPHICS_OPS = 200_000


def _parse_pdf(data: bytes, filename: str) -> _Raw:
    """PDF via unstructured's ``fast`` strategy (pdfminer), with the guards it lacks.

    unstructured returns ``[]`` without an error for encrypted PDFs and for
    pages its complexity heuristic rejects, so encryption is checked first and
    an empty result is re-tried on the raw text layer before calling it NO_TEXT.
    """
    from unstructured.partition.pdf import partition_pdf

    _check_pdf_envelope(data)
    reader = _open_pdf(data)
    elements = partition_pdf(file=io.BytesIO(data), strategy="fast", metadata_filename=filename)
    if not any((el.text or "").strip() for el in elements):
        elements = _pdf_text_layer_elements(data, reader)
    return _Raw(elements, title=_pdf_info(reader, "/Title"), metadata=_pdf_metadata(reader))


def _check_pdf_envelope(data: bytes) -> None:
    """Reject non-PDFs and truncated PDFs before pdfminer guesses its way through them.

    A PDF ends with an ``%%EOF`` marker; a truncated upload lacks it, and
    pypdf/pdfminer would otherwise rebuild what they can and index half a file.
    """
    if _PDF_MAGIC not in data[:_PDF_HEADER_WINDOW]:
        raise IngestError(ReasonCode.CORRUPT, "not a PDF: no %PDF- header")
    if b"%%EOF" not in data:
        raise IngestError(ReasonCode.CORRUPT, "truncated PDF: no %%EOF marker")


def _open_pdf(data: bytes) -> PdfReader:
    """Open with pypdf; an encrypted PDF is readable only if its user password is empty.

    "Copy-protected" PDFs are encrypted with an owner password only: anyone
    may open and extract them, so they are parsed, not rejected.
    """
    try:
        reader = PdfReader(io.BytesIO(data))
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise IngestError(ReasonCode.CORRUPT, f"unreadable PDF: {exc}") from exc
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:  # pypdf raises several types for unsupported crypto
            raise IngestError(ReasonCode.ENCRYPTED, f"encrypted PDF that cannot be opened: {exc}") from exc
        if not opened:
            raise IngestError(ReasonCode.ENCRYPTED, "PDF is password-protected")
    return reader


def _pdf_text_layer_elements(data: bytes, reader: PdfReader) -> list[UElement]:
    """Extract text that ``partition_pdf`` skipped; ``[]`` when there is no text layer (scans)."""
    from unstructured.partition.pdf import extractable_elements, is_pdf_too_complex
    from unstructured.partition.utils.constants import SORT_MODE_XY_CUT
    from unstructured.partition.utils.sorting import sort_page_elements

    if not any((page.extract_text() or "").strip() for page in reader.pages):
        return []
    # Keep unstructured's defences against crafted content streams (CVE-2026-33123);
    # relax only the operator count that flagged a merely busy page.
    if is_pdf_too_complex(file=data, max_graphics_ops=_RELAXED_GRAPHICS_OPS):
        raise IngestError(ReasonCode.PARSER_ERROR, "PDF content streams exceed the parser's safety limits")
    pages = extractable_elements(file=data, languages=["eng"])
    return [el for page in pages for el in sort_page_elements(page, SORT_MODE_XY_CUT)]


def _pdf_info(reader: PdfReader, key: str) -> str | None:
    """One document-info entry as text; broken info dictionaries are common and not fatal."""
    try:
        value = (reader.metadata or {}).get(key)
    except (PdfReadError, KeyError, TypeError, ValueError):
        return None
    return str(value) if value else None


def _pdf_metadata(reader: PdfReader) -> dict[str, object]:
    metadata: dict[str, object] = {"page_count": len(reader.pages)}
    author = _pdf_info(reader, "/Author")
    if author:
        metadata["author"] = author
    if reader.is_encrypted:
        metadata["pdf_permissions_restricted"] = True
    return metadata
