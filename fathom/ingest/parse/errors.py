"""Parser exceptions mapped to reason codes, so one bad file fails alone and says why."""

from __future__ import annotations

import re
import zipfile
from xml.etree import ElementTree

from lxml import etree
from pypdf.errors import PdfReadError

from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.parse.base import _Format


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
