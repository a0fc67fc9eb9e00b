"""Word, PowerPoint and Excel (OOXML and 97-2003): encryption detection, then unstructured's partitioners."""

from __future__ import annotations

import io
import shutil

from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.parse.archive import _with_properties, _zip_properties
from fathom.ingest.parse.base import _Raw


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
