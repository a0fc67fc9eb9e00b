"""Parse documents into normalised, section-aware elements with ``unstructured``, offline.

Entry points: :func:`parse_file` (a path) and :func:`parse_bytes` (an API
upload); both go through the same bytes-based pipeline so they cannot disagree.

Pipeline for one document:

1. resolve the format (extension, then content type, then content sniffing);
2. format-specific guards that ``unstructured`` lacks: encrypted PDF/Office
   detection, truncated PDFs, text decoding done here rather than by
   unstructured's guesser, LibreOffice presence for .doc/.ppt;
3. partition with the per-format ``unstructured`` partitioner (``fast`` for PDF);
4. normalise each element's text (:mod:`fathom.ingest.normalize`), drop empty ones and
   repeated page furniture, and give every element the headings above it;
5. validate (no text, too little text) and detect the language.

Every failure is an :class:`IngestError` with a specific :class:`ReasonCode`;
any other exception a parser raises is mapped to one, so one bad file never
aborts a batch.

One module per format family behind this entry: ``pdf``, ``office`` (Word,
PowerPoint, Excel), ``pandoc`` (ODT, EPUB, RTF), ``text`` (plain, Markdown,
HTML, CSV, TSV), ``mail`` (EML, MSG), ``jats`` (XML); ``archive`` guards zip
containers, ``formats`` is the table that maps names and types to families,
``errors`` maps parser exceptions, ``structure`` builds sections and titles.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING


def _import_spacy_without_torch() -> None:
    """Import spaCy (which unstructured uses for sentences) with torch hidden.

    spaCy's ``thinc`` imports torch whenever it is installed, only to offer GPU
    ops that the small English pipeline never uses. Torch is installed beside
    Fathom for exporting models, but serving must not pay its ~1 s import and
    hundreds of MB (tests/e2e/test_no_torch.py). The block lasts only for this
    import, so a training command in the same process can still use torch.
    """
    if "thinc" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]   # makes `import torch` raise ImportError
    try:
        import spacy  # noqa: F401
        import thinc.api  # noqa: F401
    finally:
        if sys.modules.get("torch", "") is None:
            del sys.modules["torch"]


_import_spacy_without_torch()


# Everything below may import unstructured's dependencies (spaCy among them): only after the block above.
from fathom.config import get_settings  # noqa: E402
from fathom.ingest.document import Element, IngestError, ParsedDocument, ReasonCode  # noqa: E402
from fathom.ingest.normalize import check_min_text, detect_language, find_repeated_furniture  # noqa: E402
from fathom.ingest.parse.archive import _ZIP_FORMATS, _check_archive  # noqa: E402
from fathom.ingest.parse.base import _Format, _Raw  # noqa: E402
from fathom.ingest.parse.errors import _map_exception  # noqa: E402
from fathom.ingest.parse.formats import SUPPORTED_EXTENSIONS, _resolve_format  # noqa: E402
from fathom.ingest.parse.structure import _document_title, _normalized_items, _with_sections  # noqa: E402

if TYPE_CHECKING:
    from unstructured.documents.elements import Element as UElement

__all__ = ["SUPPORTED_EXTENSIONS", "parse_bytes", "parse_file", "_ZIP_FORMATS", "_check_archive"]


def parse_bytes(data: bytes, filename: str, *, content_type: str | None = None) -> ParsedDocument:
    """Parse an uploaded document; raises :class:`IngestError` for every per-document failure."""
    if not data:
        raise IngestError(ReasonCode.EMPTY_FILE, "the file is empty (0 bytes)")
    fmt = _resolve_format(data, filename, content_type)
    if fmt.name in _ZIP_FORMATS:
        _check_archive(data, fmt.name)
    raw = _partition(fmt, data, filename)
    elements = _structured_elements(raw.elements, fmt)
    if not elements:
        hint = " (scanned or image-only pages have no text layer, and there is no OCR here)" if fmt.paged else ""
        raise IngestError(ReasonCode.NO_TEXT, f"no extractable text in this {fmt.name} file{hint}")
    document = ParsedDocument(elements=elements, filetype=fmt.mime, source_name=filename, metadata=raw.metadata)
    check_min_text(document.text, get_settings().ingest.min_text_chars)
    document.language = detect_language(document.text)
    document.title = _document_title(raw.title, elements)
    return document


def parse_file(path: Path, *, source_name: str | None = None, content_type: str | None = None) -> ParsedDocument:
    """Parse a document on disk (same pipeline as :func:`parse_bytes`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise IngestError(ReasonCode.CORRUPT, f"cannot read {path}: {exc.strerror or exc}") from exc
    return parse_bytes(data, source_name or Path(path).name, content_type=content_type)


def _partition(fmt: _Format, data: bytes, filename: str) -> _Raw:
    """Run the format's handler; any exception becomes an IngestError for this document only."""
    try:
        return fmt.handler(data, filename)
    except IngestError:
        raise
    except Exception as exc:
        raise _map_exception(fmt, exc) from exc


def _structured_elements(raw: list[UElement], fmt: _Format) -> list[Element]:
    items = _normalized_items(raw, fmt)
    furniture = find_repeated_furniture([item.element for item in items], paged=fmt.paged)
    return _with_sections([item for i, item in enumerate(items) if i not in furniture], fmt)
