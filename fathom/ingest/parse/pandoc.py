"""ODT, EPUB and RTF: the formats unstructured converts with pandoc."""

from __future__ import annotations

import io
import zipfile
from xml.etree import ElementTree

from fathom.ingest.parse.archive import _dublin_core, _with_properties, _zip_properties
from fathom.ingest.parse.base import _Raw


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
