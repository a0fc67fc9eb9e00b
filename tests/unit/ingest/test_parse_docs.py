"""Document parsing: the expected outcome of every fixture document, plus normalisation units.

``EXPECTED`` (tests/docs_support.py) records, for each of the 81 files in ``docs/MANIFEST.tsv``, what the
file *is* and therefore what parsing it must give: ``ok`` (with checks that
prove the right text came out) or the specific reason it must be rejected.

Unit tests build their inputs in ``tmp_path``; fixture files are only ever read
from the datasets folder (``$FATHOM_DATA_DIR/docs``).  The two large fixtures
are marked ``slow`` (about 20-40 s and 80-130 s on 2 shared cores).
"""

from __future__ import annotations

import codecs
import io
import zipfile
from pathlib import Path

import pytest

from fathom.ingest.document import Element, IngestError, ParsedDocument, ReasonCode
from fathom.ingest.normalize import (
    decode_text,
    dehyphenate,
    detect_language,
    find_repeated_furniture,
    normalize_element_text,
    text_length,
)
from fathom.ingest.parse import SUPPORTED_EXTENSIONS, parse_bytes, parse_file
from fathom.benchmarks.config import data_dir
from fathom.config import get_settings
from tests.docs_support import EXPECTED, HAS_SOFFICE, Expected, expected_reason


@pytest.fixture(scope="module")
def docs_dir() -> Path:
    path = data_dir() / "docs"
    if not (path / "MANIFEST.tsv").is_file():
        pytest.skip(f"fixture documents not found at {path} (set FATHOM_DATA_DIR)")
    return path


def _manifest_files(docs_dir: Path) -> set[str]:
    lines = (docs_dir / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    return {line.split("\t")[0] for line in lines[1:] if line.strip()}


def test_table_covers_exactly_the_manifest(docs_dir: Path) -> None:
    listed = _manifest_files(docs_dir)
    assert sorted(listed - EXPECTED.keys()) == [], "fixtures with no expected outcome"
    assert sorted(EXPECTED.keys() - listed) == [], "expected outcomes for files not in MANIFEST.tsv"


def _fixture_params() -> list[object]:
    return [pytest.param(name, marks=[pytest.mark.slow] if exp.slow else [], id=name) for name, exp in sorted(EXPECTED.items())]


@pytest.mark.parametrize("name", _fixture_params())
def test_fixture_outcome(name: str, docs_fixtures) -> None:  # type: ignore[no-untyped-def]
    expected = EXPECTED[name]
    reason = expected_reason(expected)
    if reason is not None:
        with pytest.raises(IngestError) as raised:
            docs_fixtures(name)
        assert raised.value.code is reason, raised.value.message
        if expected.needs_soffice:
            assert "LibreOffice" in raised.value.message
        return
    _check_ok(docs_fixtures(name), expected)



def _check_ok(doc: ParsedDocument, expected: Expected) -> None:
    assert len(doc.elements) >= expected.min_elements
    assert text_length(doc.text) >= get_settings().ingest.min_text_chars
    assert all(e.text and e.text == e.text.strip() for e in doc.elements), "empty or unstripped element"
    assert "/" in doc.filetype
    for element in doc.elements:
        if element.is_heading:
            assert element.section_path[-1] == element.text
    if expected.phrase:
        assert expected.phrase in doc.text
    if expected.absent:
        assert expected.absent not in doc.text
    if expected.title:
        assert expected.title in (doc.title or "")
    if expected.language:
        assert doc.language == expected.language
    if expected.min_pages:
        assert max(e.page_number or 0 for e in doc.elements) >= expected.min_pages
    if expected.category:
        assert any(e.category == expected.category for e in doc.elements)
    if expected.section:
        tail = expected.section
        assert any(e.section_path[-len(tail):] == tail for e in doc.elements), f"no element under {tail}"


def test_parse_bytes_agrees_with_parse_file(docs_dir: Path) -> None:
    path = docs_dir / "unstructured/layout-parser-paper-fast.pdf"
    from_file = parse_file(path)
    from_bytes = parse_bytes(path.read_bytes(), path.name)
    assert from_bytes == from_file
    assert from_file.source_name == path.name


@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_fixture_pdf_is_reported_not_raised(docs_dir: Path, tmp_path: Path, keep: float) -> None:
    data = (docs_dir / "unstructured/layout-parser-paper-fast.pdf").read_bytes()
    copy = tmp_path / "truncated.pdf"
    copy.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(IngestError) as raised:
        parse_file(copy)
    assert raised.value.code in (ReasonCode.CORRUPT, ReasonCode.PARSER_ERROR)


# --------------------------------------------------------------------------- PDFs built here


def _pdf(pages: list[list[tuple[int, str]]]) -> bytes:
    """A minimal valid PDF: each page is a list of (y, text) lines in Helvetica.

    Written by hand so the PDF tests need neither fixtures nor a PDF-writing
    library; offsets in the xref table are computed as the file is assembled.
    """
    def escape(text: str) -> bytes:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("cp1252")

    page_ids = [4 + 2 * i for i in range(len(pages))]
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % i for i in page_ids), len(pages)),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for page_id, lines in zip(page_ids, pages):
        content = b"".join(b"BT /F1 11 Tf 72 %d Td (%s) Tj ET\n" % (y, escape(text)) for y, text in lines)
        objects[page_id] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects[page_id + 1] = b"<< /Length %d >>\nstream\n%sendstream" % (len(content), content)
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offsets[number] for number in sorted(objects))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


TOPICS = ["sparse retrieval", "dense retrieval", "reranking", "evaluation"]


def _report_pdf() -> bytes:
    """Four pages: a running head, a numbered heading, a paragraph hyphenated across lines, a page number."""
    pages = []
    for number, topic in enumerate(TOPICS, start=1):
        pages.append([
            (760, "Fathom Field Guide"),
            (700, f"{number} Notes on {topic}"),
            (660, f"This page explains {topic} for the search team, and the infor-"),
            (647, f"mation it records about {topic} decides recall."),
            (40, str(number)),
        ])
    return _pdf(pages)


def test_generated_pdf_structure() -> None:
    doc = parse_bytes(_report_pdf(), "guide.pdf")
    texts = [e.text for e in doc.elements]
    assert texts.count("Fathom Field Guide") == 1, "running head kept once"
    assert not any(t.isdigit() for t in texts), "page numbers dropped"
    assert "information it records about reranking" in doc.text, "hyphenation across lines joined"
    headings = [e for e in doc.elements if e.is_heading]
    assert len(headings) >= 2
    assert all(h.text.startswith(f"{h.page_number} Notes") for h in headings), "page numbers kept"
    body = next(e for e in doc.elements if "about evaluation" in e.text)
    assert body.section_path == ("4 Notes on evaluation",)
    assert doc.title == "1 Notes on sparse retrieval"
    assert doc.metadata["page_count"] == 4
    assert doc.language == "en"


def _encrypted(data: bytes, user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_with_user_password_is_encrypted() -> None:
    with pytest.raises(IngestError) as raised:
        parse_bytes(_encrypted(_report_pdf(), "user-secret"), "locked.pdf")
    assert raised.value.code is ReasonCode.ENCRYPTED


def test_pdf_with_owner_password_only_is_parsed() -> None:
    doc = parse_bytes(_encrypted(_report_pdf(), ""), "protected.pdf")
    assert "decides recall" in doc.text
    assert doc.metadata["pdf_permissions_restricted"] is True


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda data: data[: len(data) // 2], ReasonCode.CORRUPT),
        (lambda data: data[:-40], ReasonCode.CORRUPT),
        (lambda data: b"%XYZ" + data[4:], ReasonCode.CORRUPT),
    ],
    ids=["half", "no-trailer", "bad-header"],
)
def test_damaged_generated_pdf(mangle, reason: ReasonCode, tmp_path: Path) -> None:
    path = tmp_path / "damaged.pdf"
    path.write_bytes(mangle(_report_pdf()))
    with pytest.raises(IngestError) as raised:
        parse_file(path)
    assert raised.value.code is reason


def test_pdf_without_text_layer_is_no_text() -> None:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=612, height=792)
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(IngestError) as raised:
        parse_bytes(out.getvalue(), "blank.pdf")
    assert raised.value.code is ReasonCode.NO_TEXT


def test_parse_bytes_agrees_with_parse_file_on_generated_pdf(tmp_path: Path) -> None:
    path = tmp_path / "guide.pdf"
    path.write_bytes(_report_pdf())
    assert parse_file(path) == parse_bytes(path.read_bytes(), "guide.pdf")


# --------------------------------------------------------------------------- Office files built here


def _docx(title: str = "") -> bytes:
    import docx

    document = docx.Document()
    document.core_properties.title = title
    document.add_heading("Quarterly review", level=1)
    document.add_paragraph("Revenue grew in every region, led by the northern stores.")
    document.add_heading("Outlook", level=2)
    document.add_paragraph("We expect steady demand through the winter season.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_headings_sections_and_core_title() -> None:
    doc = parse_bytes(_docx(title="Northern stores review"), "review.docx")
    assert doc.title == "Northern stores review"
    outlook = next(e for e in doc.elements if "winter" in e.text)
    assert outlook.section_path == ("Quarterly review", "Outlook")


def test_encrypted_docx() -> None:
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(_docx())).encrypt("secret", out)
    with pytest.raises(IngestError) as raised:
        parse_bytes(out.getvalue(), "locked.docx")
    assert raised.value.code is ReasonCode.ENCRYPTED


def _zip_without_document() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("notes.txt", "not a word document")
    return out.getvalue()


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("random.docx", bytes(range(256)) * 8),
        ("empty-zip.docx", _zip_without_document()),
        ("random.xlsx", bytes(range(256)) * 8),
        ("random.pptx", b"PK\x03\x04" + bytes(range(256)) * 4),
        ("random.msg", b"this is not an Outlook message"),
        ("random.epub", b"this is not an EPUB container"),
        ("random.odt", b"this is not an ODF package"),
        ("broken.xml", b"<a><b>unclosed</a>"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_corrupt_containers(filename: str, data: bytes) -> None:
    with pytest.raises(IngestError) as raised:
        parse_bytes(data, filename)
    assert raised.value.code is ReasonCode.CORRUPT, raised.value.message


# --------------------------------------------------------------------------- text formats and encodings

FRENCH = "L'été était très chaud cette année. J'ai acheté un café au lait pour 3,50 €. C'était délicieux !"
RUSSIAN = "Съешь же ещё этих мягких французских булок, да выпей же чаю. Широкая электрификация южных губерний."


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-8"])
def test_text_with_bom(tmp_path: Path, encoding: str) -> None:
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-8": codecs.BOM_UTF8}[encoding]
    path = tmp_path / "note.txt"
    path.write_bytes(bom + FRENCH.encode(encoding))
    doc = parse_file(path)
    assert doc.text == FRENCH
    assert doc.metadata["encoding"] == encoding
    assert doc.language == "fr"


def test_cp1252_text_is_not_read_as_central_european(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes(FRENCH.encode("cp1252"))
    doc = parse_file(path)
    assert doc.text == FRENCH
    assert doc.metadata["encoding"] == "cp1252"


def test_latin1_html_without_declaration(tmp_path: Path) -> None:
    page = f"<html><body><h1>Grüße aus Köln</h1><p>{FRENCH.replace('€', 'EUR')}</p></body></html>"
    path = tmp_path / "page.html"
    path.write_bytes(page.encode("latin-1"))
    doc = parse_file(path)
    assert doc.elements[0].text == "Grüße aus Köln" and doc.elements[0].is_heading
    assert "très chaud" in doc.text


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    page = f'<html><head><meta charset="windows-1251"><title>Булки</title></head><body><p>{RUSSIAN}</p></body></html>'
    path = tmp_path / "page.html"
    path.write_bytes(page.encode("cp1251"))
    doc = parse_file(path)
    assert doc.text == RUSSIAN
    assert doc.title == "Булки"
    assert doc.language == "ru"


def test_cyrillic_legacy_encoding_is_not_forced_to_cp1252() -> None:
    decoded = decode_text(RUSSIAN.encode("cp1251"))
    assert decoded.text == RUSSIAN


def test_double_encoded_utf8_is_repaired() -> None:
    mojibake = "Seasons 1986–1990 cost £5".encode("utf-8").decode("latin-1").encode("utf-8")
    decoded = decode_text(mojibake)
    assert decoded.text == "Seasons 1986–1990 cost £5"
    assert decoded.repaired


def test_undecodable_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.txt"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(IngestError) as raised:
        parse_file(path)
    assert raised.value.code is ReasonCode.ENCODING


def test_control_and_zero_width_characters_removed(tmp_path: Path) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes("Search\u200bable te\x00xt with a\x1b bell\x07 and a soft hy\u00adphen, kept readable.".encode("utf-8"))
    assert parse_file(path).text == "Searchable text with a bell and a soft hyphen, kept readable."


def test_csv_in_legacy_encoding(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes("Produit,Prix\nCafé crème,3\nCrêpe sucrée,4\n".encode("cp1252"))
    doc = parse_file(path)
    assert "Café crème" in doc.text and "Crêpe sucrée" in doc.text
    assert doc.elements[0].category == "Table"


def test_utf16_email(tmp_path: Path) -> None:
    message = (
        "From: Ada <ada@example.com>\r\nTo: Bob <bob@example.com>\r\nSubject: Café plans\r\n"
        "Date: Tue, 01 Oct 2024 12:34:56 -0500\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        "Let us meet at the café on Friday and review the retrieval benchmarks together.\r\n"
    )
    path = tmp_path / "mail.eml"
    path.write_bytes(codecs.BOM_UTF16_LE + message.encode("utf-16-le"))
    doc = parse_file(path)
    assert doc.title == "Café plans"
    assert doc.metadata["from"] == "Ada <ada@example.com>"
    assert "meet at the café" in doc.text


def test_markdown_section_paths(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text(
        "# Guide\n\nIntro paragraph about the guide.\n\n## Install\n\nRun the installer first.\n\n"
        "## Usage\n\nCall the search endpoint.\n\n### Filters\n\nFilters narrow the results.\n\n"
        "# Appendix\n\nReference tables follow.\n",
        encoding="utf-8",
    )
    paths = {e.text: e.section_path for e in parse_file(path).elements}
    assert paths["Intro paragraph about the guide."] == ("Guide",)
    assert paths["Run the installer first."] == ("Guide", "Install")
    assert paths["Filters narrow the results."] == ("Guide", "Usage", "Filters")
    assert paths["Reference tables follow."] == ("Appendix",)
    assert paths["Usage"] == ("Guide", "Usage")


def _jats(body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?><article><front><article-meta><title-group>'
        "<article-title>Ducks in <italic>winter</italic></article-title></title-group>"
        "<abstract><p>We count ducks on frozen lakes across three seasons.</p></abstract>"
        f"</article-meta></front><body>{body}</body></article>"
    ).encode("utf-8")


def test_jats_article_sections() -> None:
    doc = parse_bytes(
        _jats("<sec><title>Methods</title><p>Counts were made at dawn by <xref>two</xref> observers.</p>"
              "<sec><title>Sites</title><p>Five lakes were surveyed every week.</p></sec></sec>"),
        "ducks.nxml",
    )
    assert doc.title == "Ducks in winter"
    paths = {e.text: e.section_path for e in doc.elements}
    assert paths["Counts were made at dawn by two observers."] == ("Ducks in winter", "Methods")
    assert paths["Five lakes were surveyed every week."] == ("Ducks in winter", "Methods", "Sites")
    assert paths["We count ducks on frozen lakes across three seasons."] == ("Ducks in winter", "Abstract")


def test_plain_xml_uses_leaf_text() -> None:
    doc = parse_bytes(b"<catalog><item><name>Blue kettle</name><note>Boils water in three minutes.</note></item></catalog>", "c.xml")
    assert doc.text == "Blue kettle\n\nBoils water in three minutes."


# --------------------------------------------------------------------------- validation and routing


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.pdf"
    path.write_bytes(b"")
    with pytest.raises(IngestError) as raised:
        parse_file(path)
    assert raised.value.code is ReasonCode.EMPTY_FILE


def test_whitespace_only_text_is_no_text() -> None:
    with pytest.raises(IngestError) as raised:
        parse_bytes(b" \n\t\n  \r\n", "blank.txt")
    assert raised.value.code is ReasonCode.NO_TEXT


def test_min_text_threshold_comes_from_settings() -> None:
    minimum = get_settings().ingest.min_text_chars
    enough = ("word " * minimum)[:minimum].strip().ljust(minimum, "x")
    assert text_length(enough) == minimum
    parse_bytes(enough.encode(), "enough.txt")
    with pytest.raises(IngestError) as raised:
        parse_bytes(enough[:-1].encode(), "short.txt")
    assert raised.value.code is ReasonCode.TOO_LITTLE_TEXT


def test_unknown_format_is_unsupported() -> None:
    with pytest.raises(IngestError) as raised:
        parse_bytes(bytes(range(256)), "blob.xyz", content_type="application/octet-stream")
    assert raised.value.code is ReasonCode.UNSUPPORTED_FORMAT


def test_content_type_used_when_name_has_no_extension() -> None:
    doc = parse_bytes(b"# Release notes\n\nThe new ranking model ships this week.\n", "upload", content_type="text/markdown; charset=utf-8")
    assert doc.filetype == "text/markdown"
    assert doc.elements[0].is_heading


def test_sniffing_when_name_and_content_type_say_nothing() -> None:
    doc = parse_bytes(_report_pdf(), "upload", content_type="application/octet-stream")
    assert doc.filetype == "application/pdf"


@pytest.mark.skipif(HAS_SOFFICE, reason="LibreOffice is installed here, so .doc is supported")
def test_doc_needs_libreoffice() -> None:
    assert "doc" not in SUPPORTED_EXTENSIONS
    assert {"pdf", "docx", "pptx", "xlsx", "html", "md", "txt", "eml", "msg", "csv", "epub", "xml"} <= SUPPORTED_EXTENSIONS


# --------------------------------------------------------------------------- normalisation units


def test_nfc_ligatures_and_spaces() -> None:
    raw = "Cafe\u0301\u00a0\ufb01nal\u2003e\ufb00ort (cid:12)done"
    assert normalize_element_text(raw, "NarrativeText") == "Café final effort done"


def test_whitespace_keeps_paragraph_breaks() -> None:
    raw = "First  line\nwraps here.\n\n\n\n  Second\tparagraph.  "
    assert normalize_element_text(raw, "NarrativeText") == "First line wraps here.\n\nSecond paragraph."


def test_code_keeps_indentation() -> None:
    raw = "\ndef f(x):\n    return x  \n\n"
    assert normalize_element_text(raw, "CodeSnippet") == "def f(x):\n    return x"


def test_dehyphenation_only_for_pdf_and_not_before_conjunctions() -> None:
    assert dehyphenate("the infor- mation and re- trieval") == "the information and retrieval"
    assert dehyphenate("pre- and post-processing, Anglo- Saxon") == "pre- and post-processing, Anglo- Saxon"
    assert normalize_element_text("infor- mation", "NarrativeText") == "infor- mation"
    assert normalize_element_text("infor- mation", "NarrativeText", pdf=True) == "information"


def test_language_detection_is_deterministic_iso639_1() -> None:
    assert {detect_language(FRENCH) for _ in range(5)} == {"fr"}
    assert detect_language("这是一个关于检索系统的中文句子，用来测试语言检测是否稳定。") == "zh"
    assert detect_language("42 17 3.5") is None


def _el(text: str, page: int, category: str = "NarrativeText") -> Element:
    return Element(text=text, category=category, page_number=page)


def test_repeated_page_furniture() -> None:
    bodies = ["Revenue rose.", "Costs fell.", "Margins held.", "Outlook is stable."]
    elements = []
    for page, body in enumerate(bodies, start=1):
        elements += [_el("ACME Corp. Annual Report", page), _el(body, page), _el(f"Page {page} of 4", page)]
    elements.append(_el("Confidential", 4, category="Footer"))
    drop = find_repeated_furniture(elements, paged=True)
    kept = [e.text for i, e in enumerate(elements) if i not in drop]
    assert kept.count("ACME Corp. Annual Report") == 1
    assert kept.count("Page 1 of 4") == 1 and "Page 2 of 4" not in kept
    assert all(body in kept for body in bodies)
    assert "Confidential" in kept
    assert find_repeated_furniture(elements, paged=False) == set()
