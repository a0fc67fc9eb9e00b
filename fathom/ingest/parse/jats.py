"""XML: JATS articles mapped to HTML headings and paragraphs; other XML to its leaf texts."""

from __future__ import annotations

import copy
import io

from lxml import etree

from fathom.ingest.document import IngestError, ReasonCode
from fathom.ingest.parse.base import _Raw


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
