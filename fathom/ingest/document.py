"""Typed shapes that flow through ingestion: parsed elements and per-document errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class ReasonCode(StrEnum):
    """Stable, machine-readable reasons a document is rejected.

    These codes are part of the public API (they appear in ingest reports and in
    ``GET /v1/documents``); add new ones, never rename.
    """

    UNSUPPORTED_FORMAT = "unsupported_format"      # no parser for this type here (e.g. .doc without LibreOffice)
    ENCRYPTED = "encrypted"                        # password-protected PDF/Office file
    EMPTY_FILE = "empty_file"                      # zero bytes
    NO_TEXT = "no_text"                            # parsed, but no extractable text (scanned PDF, images only)
    TOO_LITTLE_TEXT = "too_little_text"            # below the minimum-text check
    CORRUPT = "corrupt"                            # the parser could not read the file
    ENCODING = "undecodable_text"                  # text file whose encoding could not be determined
    PARSER_ERROR = "parser_error"                  # any other parser failure (message says what)
    TOO_LARGE = "too_large"
    DECOMPRESSION_BOMB = "decompression_bomb"      # a zip-based file that would inflate past the configured limits


class IngestError(Exception):
    """A per-document failure with a reason code; never raised for a whole batch."""

    def __init__(self, code: ReasonCode, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(slots=True)
class Element:
    """One structural unit of a document after parsing and normalisation."""

    text: str
    category: str                          # unstructured category: Title, NarrativeText, ListItem, Table, ...
    page_number: int | None = None
    section_path: tuple[str, ...] = ()     # headings above this element, outermost first (a heading ends with itself)
    is_heading: bool = False


@dataclass(slots=True)
class ParsedDocument:
    """A document ready for chunking: normalised elements plus document-level facts."""

    elements: list[Element]
    filetype: str                          # MIME type
    source_name: str                       # file name (or caller-supplied name)
    language: str | None = None            # ISO 639-1 if detected
    title: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)   # format-specific extras (email headers, ...)

    @property
    def text(self) -> str:
        return "\n\n".join(e.text for e in self.elements)
