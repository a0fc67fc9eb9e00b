"""Zip containers (OOXML, ODF, EPUB): the decompression-bomb guard and their Dublin Core properties."""

from __future__ import annotations

import io
import zipfile
from xml.etree import ElementTree

from fathom.config import get_settings
from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.parse.base import _Raw


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
