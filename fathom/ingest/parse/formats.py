"""The format table: which family parses which extension and MIME type, and how a format is resolved."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.parse.base import _Format
from fathom.ingest.parse.jats import _parse_xml
from fathom.ingest.parse.mail import _parse_eml, _parse_msg
from fathom.ingest.parse.office import _parse_doc, _parse_docx, _parse_ppt, _parse_pptx, _parse_spreadsheet
from fathom.ingest.parse.pandoc import _parse_epub, _parse_odt, _parse_rtf
from fathom.ingest.parse.pdf import _parse_pdf
from fathom.ingest.parse.text import _parse_csv, _parse_html, _parse_md, _parse_tsv, _parse_txt


_FORMATS: tuple[_Format, ...] = (
    _Format("pdf", "application/pdf", ("pdf",), _parse_pdf, paged=True),
    _Format("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", ("docx",), _parse_docx),
    _Format("doc", "application/msword", ("doc",), _parse_doc, needs_soffice=True),
    _Format("pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation", ("pptx",), _parse_pptx, page_sections=True),
    _Format("ppt", "application/vnd.ms-powerpoint", ("ppt",), _parse_ppt, page_sections=True, needs_soffice=True),
    _Format("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ("xlsx",), _parse_spreadsheet, page_sections=True),
    _Format("xls", "application/vnd.ms-excel", ("xls",), _parse_spreadsheet, page_sections=True),
    _Format("csv", "text/csv", ("csv",), _parse_csv, aliases=("application/csv",)),
    _Format("tsv", "text/tab-separated-values", ("tsv", "tab"), _parse_tsv),
    _Format("html", "text/html", ("html", "htm", "xhtml"), _parse_html, aliases=("application/xhtml+xml",)),
    _Format("md", "text/markdown", ("md", "markdown"), _parse_md, aliases=("text/x-markdown",)),
    _Format("txt", "text/plain", ("txt", "text"), _parse_txt),
    # In plain-text mail bodies the short lines unstructured calls Titles are greetings and signatures.
    _Format("eml", "message/rfc822", ("eml",), _parse_eml, infer_headings=False),
    _Format("msg", "application/vnd.ms-outlook", ("msg",), _parse_msg, aliases=("application/x-outlook-msg",), infer_headings=False),
    _Format("epub", "application/epub+zip", ("epub",), _parse_epub),
    _Format("odt", "application/vnd.oasis.opendocument.text", ("odt",), _parse_odt),
    _Format("rtf", "text/rtf", ("rtf",), _parse_rtf, aliases=("application/rtf",)),
    _Format("xml", "application/xml", ("xml", "nxml"), _parse_xml, aliases=("text/xml", "application/jats+xml")),
)
_BY_EXTENSION = {ext: fmt for fmt in _FORMATS for ext in fmt.extensions}
_BY_MIME = {mime: fmt for fmt in _FORMATS for mime in (fmt.mime, *fmt.aliases)}

#: File extensions (lower case, no dot) this installation can parse; .doc and
#: .ppt only when LibreOffice is installed.
SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    ext for fmt in _FORMATS if not fmt.needs_soffice or shutil.which("soffice") for ext in fmt.extensions
)


def _resolve_format(data: bytes, filename: str, content_type: str | None) -> _Format:
    """Extension first (clients send application/octet-stream for almost anything), then the content type, then sniffing."""
    by_extension = _BY_EXTENSION.get(Path(filename).suffix.lower().lstrip("."))
    if by_extension:
        return by_extension
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _BY_MIME:
        return _BY_MIME[mime]
    sniffed = _sniff_mime(data)
    if sniffed in _BY_MIME:
        return _BY_MIME[sniffed]
    raise IngestError(
        ReasonCode.UNSUPPORTED_FORMAT,
        f"no parser for {filename!r} (content type {content_type or 'not given'}, detected {sniffed or 'unknown'})",
    )


def _sniff_mime(data: bytes) -> str | None:
    """Content-based type (libmagic plus unstructured's zip/OLE inspection) for files without a usable name."""
    from unstructured.file_utils.filetype import detect_filetype

    try:
        return detect_filetype(file=io.BytesIO(data)).mime_type
    except Exception:  # detection is best effort; the caller reports UNSUPPORTED_FORMAT
        return None
