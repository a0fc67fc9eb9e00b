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
"""

from __future__ import annotations

import copy
import email
import email.policy
import html
import io
import re
import shutil
import sys
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree

from lxml import etree
from pypdf import PdfReader
from pypdf.errors import PdfReadError

from fathom.ingest.document import Element, IngestError, ParsedDocument, ReasonCode
from fathom.ingest.normalize import (
    DecodedText,
    bom_encoding,
    check_min_text,
    decode_text,
    detect_language,
    find_repeated_furniture,
    normalize_element_text,
)
from fathom.config import get_settings


def _import_spacy_without_torch() -> None:
    """Import spaCy (which unstructured uses for sentences) with torch hidden.

    spaCy's ``thinc`` imports torch whenever it is installed, only to offer GPU
    ops that the small English pipeline never uses. Torch is installed beside
    Fathom for exporting models, but serving must not pay its ~1 s import and
    hundreds of MB (tests/test_no_torch.py). The block lasts only for this
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

if TYPE_CHECKING:
    from unstructured.documents.elements import Element as UElement

# ``unstructured`` partitioners are imported inside the handlers: importing the
# PDF one alone pulls in cv2, onnxruntime, matplotlib and pandas (seconds),
# which a process that only needs SUPPORTED_EXTENSIONS should not pay for.


# --------------------------------------------------------------------------- formats


@dataclass(slots=True)
class _Raw:
    """What a format handler extracted, before normalisation."""

    elements: list[UElement]
    title: str | None = None                       # from document metadata, if any
    metadata: dict[str, object] = field(default_factory=dict)


Handler = Callable[[bytes, str], _Raw]


@dataclass(frozen=True, slots=True)
class _Format:
    """One supported input format and how to parse it."""

    name: str
    mime: str
    extensions: tuple[str, ...]
    handler: Handler
    aliases: tuple[str, ...] = ()                  # other MIME types that mean this format
    paged: bool = False                            # pages are print pages: running heads repeat on them
    page_sections: bool = False                    # each page (slide, sheet) starts its own section tree
    infer_headings: bool = True                    # trust Titles that unstructured guessed from plain text
    needs_soffice: bool = False


# --------------------------------------------------------------------------- PDF

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


# --------------------------------------------------------------------------- Office


def _check_office_encryption(data: bytes) -> None:
    """Detect password-protected Word/Excel/PowerPoint files (OOXML and 97-2003).

    An encrypted .docx is not a zip but an OLE container holding an
    ``EncryptedPackage``, which the parsers would report as a corrupt zip.
    msoffcrypto is only a detector here: a file it cannot classify is left to
    the real parser, whose error says more.
    """
    import msoffcrypto

    try:
        encrypted = msoffcrypto.OfficeFile(io.BytesIO(data)).is_encrypted()
    except Exception:
        return
    if encrypted:
        raise IngestError(ReasonCode.ENCRYPTED, "Office document is password-protected")


# --------------------------------------------------------------------------- zip containers

#: Formats that are zip archives (OOXML, ODF, EPUB): checked by :func:`_check_archive` before parsing.
_ZIP_FORMATS = frozenset({"docx", "pptx", "xlsx", "odt", "epub"})
# Formats that pandoc (an external program) unpacks; the rest are read through Python's zipfile.
_EXTERNAL_UNZIP = frozenset({"odt", "epub"})
_RATIO_FLOOR_BYTES = 1024 * 1024      # small members may compress extremely well without being a threat


def _check_archive(data: bytes, fmt_name: str) -> None:
    """Refuse a zip bomb before any parser inflates it (reason ``decompression_bomb``).

    A DOCX/XLSX is a zip, and the parsers inflate every XML part into memory:
    a 300 KB upload of deflated zeros is hundreds of MB, a crafted one
    gigabytes, and the per-file byte limit sees only the 300 KB. The central
    directory declares every member's sizes, so the check reads only that:
    the total inflated size and each large member's compression ratio against
    ``ingest.max_archive_uncompressed_bytes`` / ``ingest.max_archive_ratio``.
    Declared sizes bind Python's zipfile (it stops at ``file_size`` and a
    lying header fails its CRC check); pandoc (ODT, EPUB) unpacks by itself,
    so for those the members are also test-read here, bounded by the same
    total. A file that is not a zip at all is left to the parser (``corrupt``).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        return
    settings = get_settings().ingest
    limit, max_ratio = settings.max_archive_uncompressed_bytes, settings.max_archive_ratio
    with archive:
        members = archive.infolist()
        total = sum(m.file_size for m in members)
        if total > limit:
            raise IngestError(ReasonCode.DECOMPRESSION_BOMB,
                              f"the {fmt_name} archive would inflate to {total} bytes ({len(members)} parts); "
                              f"at most {limit} (ingest.max_archive_uncompressed_bytes)")
        for m in members:
            if m.file_size > _RATIO_FLOOR_BYTES and m.file_size > max_ratio * max(m.compress_size, 1):
                raise IngestError(ReasonCode.DECOMPRESSION_BOMB,
                                  f"part {m.filename!r} inflates {m.file_size / max(m.compress_size, 1):.0f}x "
                                  f"({m.compress_size} -> {m.file_size} bytes); at most {max_ratio:g}x "
                                  "(ingest.max_archive_ratio)")
        if fmt_name in _EXTERNAL_UNZIP:
            try:
                bad = archive.testzip()   # inflates each member at most to its declared size, checks its CRC
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, EOFError, OSError) as exc:
                raise IngestError(ReasonCode.CORRUPT, f"unreadable {fmt_name} archive: {exc}") from exc
            if bad is not None:
                raise IngestError(ReasonCode.CORRUPT, f"the {fmt_name} archive's part {bad!r} fails its CRC check")


_DC = "{http://purl.org/dc/elements/1.1/}"


def _dublin_core(archive: zipfile.ZipFile, member: str) -> dict[str, str]:
    """dc:title / dc:creator from an XML part of a zip container (OOXML core, ODF meta, EPUB OPF)."""
    try:
        root = ElementTree.fromstring(archive.read(member))
    except (KeyError, ElementTree.ParseError):
        return {}
    found = {name: root.findtext(f".//{_DC}{name}") for name in ("title", "creator")}
    return {name: value.strip() for name, value in found.items() if value and value.strip()}


def _zip_properties(data: bytes, member: str) -> dict[str, str]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return _dublin_core(archive, member)
    except zipfile.BadZipFile:
        return {}


def _with_properties(raw: _Raw, properties: dict[str, str]) -> _Raw:
    """Copy dc:title/dc:creator into the document title and metadata."""
    raw.title = properties.get("title")
    if "creator" in properties:
        raw.metadata["author"] = properties["creator"]
    return raw


def _parse_docx(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.docx import partition_docx

    _check_office_encryption(data)
    elements = partition_docx(file=io.BytesIO(data), metadata_filename=filename)
    return _with_properties(_Raw(elements), _zip_properties(data, "docProps/core.xml"))


def _parse_pptx(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.pptx import partition_pptx

    _check_office_encryption(data)
    elements = partition_pptx(file=io.BytesIO(data), metadata_filename=filename)
    raw = _with_properties(_Raw(elements), _zip_properties(data, "docProps/core.xml"))
    raw.metadata["slide_count"] = max((el.metadata.page_number or 0 for el in elements), default=0)
    return raw


def _parse_spreadsheet(data: bytes, filename: str) -> _Raw:
    """XLSX and XLS (pandas/openpyxl/xlrd); one section tree per sheet."""
    from unstructured.partition.xlsx import partition_xlsx

    _check_office_encryption(data)
    elements = partition_xlsx(file=io.BytesIO(data), metadata_filename=filename)
    for el in elements:
        # pandas' to_html writes a line break inside a cell as the two characters "\n".
        el.text = el.text.replace("\\n", "\n")
    raw = _with_properties(_Raw(elements), _zip_properties(data, "docProps/core.xml"))
    raw.metadata["sheet_names"] = list(dict.fromkeys(el.metadata.page_name for el in elements if el.metadata.page_name))
    return raw


def _require_soffice(kind: str) -> None:
    if shutil.which("soffice") is None:
        raise IngestError(
            ReasonCode.UNSUPPORTED_FORMAT,
            f"legacy {kind} files need LibreOffice (`soffice` on PATH) to be converted; it is not installed",
        )


def _parse_doc(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.doc import partition_doc

    _check_office_encryption(data)
    _require_soffice(".doc")
    return _Raw(partition_doc(file=io.BytesIO(data), metadata_filename=filename))


def _parse_ppt(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.ppt import partition_ppt

    _check_office_encryption(data)
    _require_soffice(".ppt")
    return _Raw(partition_ppt(file=io.BytesIO(data), metadata_filename=filename))


# --------------------------------------------------------------------------- pandoc formats


def _parse_odt(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.odt import partition_odt

    elements = partition_odt(file=io.BytesIO(data), metadata_filename=filename)
    return _with_properties(_Raw(elements), _zip_properties(data, "meta.xml"))


def _epub_properties(data: bytes) -> dict[str, str]:
    """EPUB title/author live in the OPF package file that META-INF/container.xml points to."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            container = ElementTree.fromstring(archive.read("META-INF/container.xml"))
            rootfile = container.find(".//{urn:oasis:names:tc:opendocument:xmlns:container}rootfile")
            if rootfile is None or not rootfile.get("full-path"):
                return {}
            return _dublin_core(archive, rootfile.get("full-path", ""))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError):
        return {}


def _parse_epub(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.epub import partition_epub

    elements = partition_epub(file=io.BytesIO(data), metadata_filename=filename)
    return _with_properties(_Raw(elements), _epub_properties(data))


def _parse_rtf(data: bytes, filename: str) -> _Raw:
    from unstructured.partition.rtf import partition_rtf

    return _Raw(partition_rtf(file=io.BytesIO(data), metadata_filename=filename))


# --------------------------------------------------------------------------- text formats

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


# --------------------------------------------------------------------------- email


def _parse_eml(data: bytes, filename: str) -> _Raw:
    """RFC 822 mail: body only (attachments are listed in metadata, not indexed).

    Attachments would be partitioned with their own, unconfigured strategies
    (image attachments go to hi_res and try to download a model), so the API
    should ingest them as documents of their own.  A whole message saved as
    UTF-16 (with BOM) is transcoded first: the email parser reads bytes as ASCII.
    """
    from unstructured.partition.email import partition_email

    if bom_encoding(data):
        data = decode_text(data).text.encode("utf-8")
    message = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise IngestError(ReasonCode.CORRUPT, "no email headers found")
    elements = partition_email(file=io.BytesIO(data), process_attachments=False, metadata_filename=filename)
    headers = _email_headers(message)
    return _Raw(elements, title=headers.get("subject"), metadata=dict(headers) | _email_attachments(message))


def _email_headers(message: EmailMessage) -> dict[str, str]:
    names = {"subject": "Subject", "from": "From", "to": "To", "cc": "Cc", "date": "Date", "message_id": "Message-ID"}
    values = {key: " ".join(str(message.get(header, "")).split()) for key, header in names.items()}
    return {key: value for key, value in values.items() if value}


def _email_attachments(message: EmailMessage) -> dict[str, object]:
    names = [part.get_filename() or part.get_content_type() for part in message.iter_attachments()]
    return {"attachments": names} if names else {}


def _parse_msg(data: bytes, filename: str) -> _Raw:
    """Outlook .msg via python-oxmsg; like .eml, the body only."""
    from oxmsg import Message
    from unstructured.partition.msg import partition_msg

    try:
        message = Message.load(data)
    except ValueError as exc:  # raised for "not an Outlook MSG file"
        raise IngestError(ReasonCode.CORRUPT, str(exc)) from exc
    elements = partition_msg(file=io.BytesIO(data), process_attachments=False, metadata_filename=filename)
    metadata: dict[str, object] = {"subject": message.subject, "from": message.sender}
    metadata["to"] = ", ".join(r.email_address for r in message.recipients if r.email_address)
    metadata["date"] = message.sent_date.isoformat() if message.sent_date else None
    metadata["attachments"] = [a.file_name for a in message.attachments if a.file_name]
    return _Raw(elements, title=message.subject or None, metadata={k: v for k, v in metadata.items() if v})


# --------------------------------------------------------------------------- XML / JATS

# JATS containers whose content is not body text worth retrieving.
_JATS_SKIP = frozenset({"title", "label", "ref-list", "fn-group", "sec-meta", "object-id", "alternatives", "graphic", "media"})
_JATS_SECTIONS = frozenset({"sec", "app", "ack", "boxed-text", "glossary"})


def _parse_xml(data: bytes, filename: str) -> _Raw:
    """XML: JATS articles are mapped to HTML headings/paragraphs; other XML to its leaf texts.

    unstructured's XML partitioner keeps only each tag's leading text (it drops
    the text after inline tags such as ``<italic>`` or ``<xref>``) and has no
    notion of sections, which makes a JATS article unusable; as HTML it gets
    real Title elements with depths.  Parsing never loads DTDs or entities.
    """
    from unstructured.partition.html import partition_html
    from unstructured.partition.xml import partition_xml

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise IngestError(ReasonCode.CORRUPT, f"malformed XML: {exc}") from exc
    if etree.QName(root).localname == "article" and root.find("front") is not None:
        page = _jats_to_html(root)
        return _Raw(partition_html(text=page, metadata_filename=filename), title=_jats_title(root), metadata={"schema": "JATS"})
    return _Raw(partition_xml(file=io.BytesIO(data), metadata_filename=filename))


def _text_of(node: etree._Element | None) -> str:
    return " ".join("".join(node.itertext()).split()) if node is not None else ""


def _jats_title(article: etree._Element) -> str | None:
    return _text_of(article.find("front/article-meta/title-group/article-title")) or None


def _jats_to_html(article: etree._Element) -> str:
    """Front matter title and abstracts, then body and back matter, as simple HTML."""
    page = etree.Element("html")
    body = etree.SubElement(page, "body")
    _html_child(body, "h1", _jats_title(article) or "")
    for abstract in article.iterfind("front/article-meta/abstract"):
        _html_child(body, "h2", _text_of(abstract.find("title")) or "Abstract")
        _jats_blocks(abstract, body, level=3)
    for part in ("body", "back"):
        node = article.find(part)
        if node is not None:
            _jats_blocks(node, body, level=2)
    return etree.tostring(page, encoding="unicode", method="html")


def _html_child(parent: etree._Element, tag: str, text: str) -> None:
    if text:
        etree.SubElement(parent, tag).text = text


def _jats_blocks(node: etree._Element, out: etree._Element, level: int) -> None:
    """Walk JATS block content: sections become h2..h6, tables are copied (JATS uses the XHTML table model)."""
    for child in node.iterchildren(tag=etree.Element):
        tag = etree.QName(child).localname
        if tag in _JATS_SKIP:
            continue
        if tag in _JATS_SECTIONS:
            _html_child(out, f"h{min(level, 6)}", _text_of(child.find("title")))
            _jats_blocks(child, out, level + 1)
        elif tag == "list":
            items = etree.SubElement(out, "ul")
            for item in child.iterfind("list-item"):
                _html_child(items, "li", _text_of(item))
        elif tag == "table":
            out.append(copy.deepcopy(child))
        elif tag == "caption":
            _html_child(out, "p", _text_of(child.find("title")))
            _jats_blocks(child, out, level)
        elif tag in ("p", "disp-quote", "def-item", "statement"):
            _html_child(out, "p", _text_of(child))
        else:
            _jats_blocks(child, out, level)


# --------------------------------------------------------------------------- format table

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


# --------------------------------------------------------------------------- error mapping


def _corrupt_exceptions() -> tuple[type[BaseException], ...]:
    """Exception types that mean "this file is damaged or not what its name says"."""
    from docx.opc.exceptions import PackageNotFoundError as DocxPackageNotFound
    from pdfminer.pdfparser import PDFSyntaxError
    from pdfminer.psexceptions import PSException
    from pptx.exc import PackageNotFoundError as PptxPackageNotFound
    from unstructured.errors import UnprocessableEntityError

    return (
        zipfile.BadZipFile, EOFError, PdfReadError, PDFSyntaxError, PSException, etree.XMLSyntaxError,
        ElementTree.ParseError, DocxPackageNotFound, PptxPackageNotFound, UnprocessableEntityError,
    )


# Messages of the same failures raised as generic types: python-docx's
# ValueError/KeyError for non-zips and zips without parts, olefile's OSError,
# pandoc's ParseError (exit code 64) for EPUB/ODT/RTF.
_CORRUPT_MESSAGE_RE = re.compile(
    r"not a zip|no item named|not a valid|could(?:n't| not) (?:extract|unzip)|corrupt|unsupported format"
    r"|not an ole2|file is not|truncated|exitcode \"64\"",
    re.IGNORECASE,
)
_ENCRYPTED_MESSAGE_RE = re.compile(r"encrypted|password[ -]protected", re.IGNORECASE)


def _map_exception(fmt: _Format, exc: Exception) -> IngestError:
    """Turn a parser's exception into a reason code; the message keeps the original error."""
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    detail = f"{fmt.name} parser failed: {type(exc).__name__}: {exc}"
    if isinstance(exc, (PDFPasswordIncorrect, PDFEncryptionError)) or _ENCRYPTED_MESSAGE_RE.search(str(exc)):
        return IngestError(ReasonCode.ENCRYPTED, detail)
    if isinstance(exc, UnicodeDecodeError):
        return IngestError(ReasonCode.ENCODING, detail)
    if isinstance(exc, _corrupt_exceptions()) or _CORRUPT_MESSAGE_RE.search(str(exc)):
        return IngestError(ReasonCode.CORRUPT, detail)
    return IngestError(ReasonCode.PARSER_ERROR, detail)


# --------------------------------------------------------------------------- elements and sections

# Without category_depth, consecutive Titles nest at most this deep: PDF table
# cells classified as Titles must not build a 30-level path.
_MAX_INFERRED_DEPTH = 2
# "2 Methods", "2.1 Data" (numbering, then a word) give the heading level.
_NUMBERED_HEADING_RE = re.compile(r"^(\d{1,2}(?:\.\d{1,2}){0,4})\.?\s+[^\W\d_]")
_TITLE_WORD_RE = re.compile(r"[^\W\d_]{2,}")
_MAX_TITLE_CHARS = 300
_MIN_TITLE_LETTERS = 3
# Document-info titles that name the authoring tool or file rather than the document.
_JUNK_TITLE_RE = re.compile(r"^(untitled|microsoft (word|powerpoint|excel)\b.*|.*\.(docx?|pdf|pptx?|xlsx?|html?|tex|dvi|indd|qxd))$", re.IGNORECASE)


@dataclass(slots=True)
class _Item:
    """An element on its way out, with the structure hints unstructured gave it."""

    element: Element
    depth: int | None                  # unstructured category_depth (headings only)
    page_label: str | None             # sheet name for spreadsheets


def _normalized_items(raw: Iterable[UElement], fmt: _Format) -> list[_Item]:
    """Normalise texts and drop elements left empty (page breaks, image placeholders, whitespace)."""
    items = []
    for el in raw:
        text = normalize_element_text(el.text or "", el.category, pdf=fmt.name == "pdf")
        if not text:
            continue
        depth = el.metadata.category_depth
        guessed = depth is None
        is_heading = el.category == "Title" and (not guessed or (fmt.infer_headings and _is_plausible_heading(text)))
        element = Element(text=text, category=el.category, page_number=el.metadata.page_number, is_heading=is_heading)
        items.append(_Item(element, depth, el.metadata.page_name))
    return items


def _is_plausible_heading(text: str) -> bool:
    """Second opinion on a Title that unstructured guessed from the text alone (no markup depth).

    pdfminer cuts sentences and formulas into short lines that unstructured
    calls Titles ("by metacomposition", "= apply:<f,x>"); headings start with a
    capital, a digit or an uncased letter, and do not end like a sentence.
    """
    first = text[0]
    return first.isalnum() and not first.islower() and not text.endswith((".", ",", ";"))


class _SectionTracker:
    """The stack of open headings while walking a document in reading order."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self._previous_was_heading = False

    def start_page(self, label: str | None) -> None:
        """Forget all headings (a new slide or sheet); a sheet name becomes the root."""
        self._stack = [(-1, label)] if label else []
        self._previous_was_heading = False

    def path_for(self, item: _Item) -> tuple[str, ...]:
        """Section path of the item; a heading's own path ends with itself so its body groups with it."""
        if item.element.is_heading:
            depth = item.depth if item.depth is not None else self._inferred_depth(item.element.text)
            while self._stack and self._stack[-1][0] >= depth:
                self._stack.pop()
            self._stack.append((depth, item.element.text))
        self._previous_was_heading = item.element.is_heading
        return tuple(text for _, text in self._stack)

    def _inferred_depth(self, text: str) -> int:
        """Level of a heading the parser gave no depth for (PDF, spreadsheets, email).

        Section numbering decides when present ("2.1 Methods" is level 1).
        Otherwise a heading directly under another heading is its child (a
        document title followed by a section title), and a heading after body
        text is a sibling of the last heading.
        """
        numbered = _NUMBERED_HEADING_RE.match(text)
        if numbered:
            return numbered.group(1).count(".")
        last = max((depth for depth, _ in self._stack), default=-1)
        if last < 0:
            return 0
        return min(last + 1, _MAX_INFERRED_DEPTH) if self._previous_was_heading else last


def _with_sections(items: list[_Item], fmt: _Format) -> list[Element]:
    tracker = _SectionTracker()
    current_page: int | None = None
    elements = []
    for item in items:
        page = item.element.page_number
        if fmt.page_sections and (page != current_page or not elements):
            tracker.start_page(item.page_label)
            current_page = page
        item.element.section_path = tracker.path_for(item)
        elements.append(item.element)
    return elements


def _document_title(metadata_title: str | None, elements: Iterable[Element]) -> str | None:
    """Metadata title unless it is a placeholder, else the first heading that reads like words."""
    if metadata_title:
        cleaned = " ".join(metadata_title.split())
        if _is_title_like(cleaned) and not _JUNK_TITLE_RE.match(cleaned):
            return cleaned
    return next((e.text for e in elements if e.is_heading and _is_title_like(e.text)), None)


def _is_title_like(text: str) -> bool:
    """Rejects headings such as the rotated arXiv margin "V C . s c [" or "1st" that PDFs produce."""
    letters = sum(ch.isalpha() for ch in text)
    return len(text) <= _MAX_TITLE_CHARS and letters >= _MIN_TITLE_LETTERS and _TITLE_WORD_RE.search(text) is not None


# --------------------------------------------------------------------------- entry points


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
