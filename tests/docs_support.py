"""The expected outcome of every fixture document (``$FATHOM_DATA_DIR/docs``), shared by the parse and ingest tests.

``EXPECTED`` records, for each of the 81 files in ``docs/MANIFEST.tsv``, what the
file *is* and therefore what parsing it must give: ``ok`` (with checks that
prove the right text came out) or the specific reason it must be rejected.
The table was written from looking at each file (``file``, pypdf, the raw
bytes), not copied from the parser's output: a text PDF that yields nothing is
a parser bug, not an expected NO_TEXT.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from fathom.ingest.document import ReasonCode


@dataclass(frozen=True)
class Expected:
    """What parsing one fixture must give; ``reason=None`` means it parses."""

    why: str
    reason: ReasonCode | None = None
    needs_soffice: bool = False                 # parses only where LibreOffice is installed
    slow: bool = False
    min_elements: int = 1
    phrase: str | None = None                   # must appear in the text
    absent: str | None = None                   # must not appear in the text
    title: str | None = None                    # must appear in the document title
    language: str | None = None
    min_pages: int | None = None                # highest page/slide/sheet number at least this
    category: str | None = None                 # at least one element of this category
    section: tuple[str, ...] | None = None      # some element's section path ends with this


def ok(why: str, **checks: object) -> Expected:
    return Expected(why=why, **checks)  # type: ignore[arg-type]


def fails(reason: ReasonCode, why: str) -> Expected:
    return Expected(why=why, reason=reason)


def legacy_office(what: str) -> Expected:
    """A .doc/.ppt: unstructured converts these with LibreOffice, so they parse only where it is installed."""
    return Expected(why=f"{what}; needs LibreOffice", reason=ReasonCode.UNSUPPORTED_FORMAT, needs_soffice=True)


EXPECTED: dict[str, Expected] = {
    # ---- unstructured example-docs: PDF
    "unstructured/layout-parser-paper-fast.pdf": ok(
        "2-page text PDF (arXiv paper, rotated margin text)", phrase="LayoutParser", title="LayoutParser", min_pages=2, min_elements=10),
    "unstructured/a1977-backus-p21.pdf": ok("scanned CACM page with an OCR text layer", phrase="metacomposition"),
    "unstructured/DA-1p.pdf": ok("1-page text PDF (game manual)", phrase="Abomination"),
    "unstructured/DA-619p.pdf": ok(
        "619-page text PDF (game manual)", slow=True, phrase="Abomination", min_pages=619, min_elements=1000),
    "unstructured/reliance.pdf": ok("3-page annual-report PDF", phrase="Integrated Annual Report", min_pages=3),
    "unstructured/chevron-page.pdf": ok("1-page report page, text plus images", phrase="Eastern Mediterranean"),
    "unstructured/multi-column-2p.pdf": ok("2-column paper", phrase="Dense Passage Retrieval", min_pages=2),
    "unstructured/korean-text-with-tables.pdf": ok("Korean text PDF with tables", phrase="빅포인트", language="ko"),
    "unstructured/interface-config-guide-p93.pdf": ok(
        "manual page; info dictionary has a title", title="Interface Configuration Guide", phrase="interface"),
    "unstructured/embedded-images-tables.pdf": ok(
        "journal page with embedded images and a table", phrase="Langmuir adsorption", title="corrosion inhibitor"),
    "unstructured/pdf-with-ocr-text.pdf": ok("scanned letter with an (imperfect) OCR text layer", phrase="Foundation"),
    "unstructured/copy-protected.pdf": ok(
        "encrypted with an owner password only (copy protection): opens without a password",
        phrase="LayoutParser", min_pages=2),
    "unstructured/password.pdf": fails(ReasonCode.ENCRYPTED, "needs a user password to open"),
    "unstructured/list-item-example.pdf": ok("2-page text PDF with bulleted lists", phrase="quality assurance", min_pages=2),
    "unstructured/single_table.pdf": fails(ReasonCode.NO_TEXT, "one scanned image of a table: no fonts, no text layer"),
    "unstructured/fr_olap.pdf": ok("12-page French paper", phrase="OLAP", language="fr", min_pages=12),
    # ---- unstructured example-docs: Word and friends
    "unstructured/handbook-872p.docx": ok(
        "872-page handbook DOCX", slow=True, phrase="CHAPTER 1", min_elements=1000),
    "unstructured/docx-tables.docx": ok("DOCX with simple, nested and merged tables", phrase="Nested Table", category="Table"),
    "unstructured/docx-hdrftr.docx": ok("DOCX whose header/footer hold most of the text", phrase="Main document", category="Header"),
    "unstructured/contains-pictures.docx": ok("DOCX with inline and floating pictures", phrase="floating picture"),
    "unstructured/page-breaks.docx": ok("DOCX with hard page and section breaks", phrase="second page", min_pages=6),
    "unstructured/simple.docx": ok("small DOCX: heading, list, paragraphs", phrase="favorite things"),
    "unstructured/simple.doc": legacy_office("Word 97 document"),
    "unstructured/simple.odt": ok("ODT (converted by pandoc)", phrase="favorite things"),
    "unstructured/fake-doc.rtf": ok("small RTF with a table (pandoc)", title="My First Heading", category="Table"),
    # ---- unstructured example-docs: HTML
    "unstructured/example-10k.html": ok("2.4 MB SEC 10-K filing (XHTML)", phrase="Galaxy Gaming", min_elements=100, category="Table"),
    "unstructured/example-10k-1p.html": ok("one page of the 10-K", phrase="Galaxy Gaming"),
    "unstructured/example-steelJIS-datasheet.html": ok("datasheet page built from tables", phrase="SNB22-3", category="Table"),
    "unstructured/example-with-scripts.html": ok(
        "news page with inline scripts; script code must not become text",
        phrase="Russian Offensive Campaign", absent="function ("),
    "unstructured/ideas-page.html": ok("essay laid out in a table", title="How to Get New Ideas"),
    "unstructured/fake-html-cp1252.html": ok(
        "windows-1252 HTML without a charset declaration (unstructured alone reads it as cp1250)",
        phrase="très chaud"),
    # ---- unstructured example-docs: email
    "unstructured/email-no-utf8-2008-07-16.062410.eml": ok("Hebrew mail in a legacy charset", phrase="בהצלחה", language="he"),
    "unstructured/email-no-utf8-2014-03-17.111517.eml": ok("HTML notification mail with image attachments", phrase="Google Account"),
    "unstructured/email-with-image.eml": ok("short mail with an image attachment", phrase="logo is attached"),
    "unstructured/family-day.eml": ok("plain mail", phrase="family day"),
    "unstructured/fake-email-attachment.eml": ok("mail with a text attachment", title="Fake email with attachment"),
    "unstructured/fake-email-b64.eml": ok("multipart/alternative, base64 bodies", phrase="Roses are red"),
    "unstructured/fake-email-utf-16.eml": ok("whole message saved as UTF-16 LE with BOM", phrase="Roses are red"),
    "unstructured/mime-different-plain-html.eml": ok("plain and HTML parts differ; HTML wins", phrase="Ray Tomlinson"),
    "unstructured/mime-html-only.eml": ok("HTML-only body, base64, ISO-8859-1", phrase="Scott Fahlman"),
    "unstructured/mime-word-encoded-subject.eml": ok("RFC 2047 encoded-word subject", title="Unicode subject"),
    "unstructured/fake-email.msg": ok("Outlook MSG", phrase="Roses are red"),
    "unstructured/fake-email-attachment.msg": ok("Outlook MSG with an attachment", title="Fake email with attachment"),
    # ---- unstructured example-docs: Markdown, slides, sheets, text, ebook
    "unstructured/README.md": ok("Markdown with headings, list and a code block", title="Example Docs", category="CodeSnippet"),
    "unstructured/codeblock.md": ok("Markdown that is mostly fenced code", category="CodeSnippet"),
    "unstructured/simple-table.md": ok("a Markdown pipe table only (58 characters)", phrase="Juicy Apples", category="Table"),
    "unstructured/umlauts-non-utf8.md": fails(
        ReasonCode.TOO_LITTLE_TEXT, "24-byte Latin-1 file: decodes fine, but only 18 characters of text"),
    "unstructured/sample-presentation.pptx": ok("4-slide deck", phrase="first content slide", min_pages=4),
    "unstructured/fake-power-point-table.pptx": ok("one slide with a table", category="Table"),
    "unstructured/2023-half-year-analyses-by-segment.xlsx": ok(
        "5-sheet financial workbook", phrase="Zone NA", min_pages=5, category="Table"),
    "unstructured/vodafone.xlsx": ok("1-sheet index workbook", phrase="Financial performance", category="Table"),
    "unstructured/stanley-cups.csv": ok("tiny CSV with CRLF line ends", phrase="Maple Leafs", category="Table"),
    "unstructured/norwich-city.txt": ok(
        "UTF-8 text that was double-encoded at the source (en dashes as C1 controls)", phrase="1986–1990"),
    "unstructured/fake-text-utf-16.txt": ok("UTF-16 LE text with BOM", phrase="Important points"),
    "unstructured/UDHR_first_article_all.txt": ok("UDHR article 1 in hundreds of languages", min_elements=100),
    "unstructured/winter-sports.epub": ok("Project Gutenberg EPUB (pandoc)", title="Winter Sports in Switzerland", min_elements=100),
    # ---- docling test data
    "docling/redp5110_sampled.pdf": ok("18-page IBM Redbook extract", phrase="Row and Column Access Control", min_pages=18),
    "docling/2305.03393v1-pg9.pdf": ok("one arXiv page with a table", phrase="Table Tokenization"),
    "docling/amt_handbook_sample.pdf": ok(
        "handbook page with a busy vector drawing: unstructured flags it 'too complex' and returns nothing",
        phrase="self-locking nuts"),
    "docling/normal_4pages.pdf": ok("4-page Korean report", language="ko", min_pages=4),
    "docling/right_to_left_01.pdf": ok("Arabic (right-to-left) text PDF", language="ar", phrase="Python"),
    "docling/code_and_formula.pdf": ok("2-page PDF with code and formulas", phrase="JavaScript Code Example"),
    "docling/picture_classification.pdf": ok("2-page PDF with figures", phrase="Figures Example"),
    "docling/wiki_duck.html": ok(
        "Wikipedia article", title="Duck - Wikipedia", section=("Duck", "Behaviour", "Feeding")),
    "docling/wiki.md": ok("Markdown article", phrase="Big Blue"),
    "docling/mixed.md": ok("Markdown with embedded HTML table and div", phrase="Scrooge McDuck", category="Table"),
    "docling/elife-56337.nxml": ok(
        "JATS XML research article", title="KRAB-zinc finger", min_elements=50,
        section=("Results", "Mouse KRAB-ZFPs target retrotransposons")),
    "docling/word_sample.docx": ok("DOCX with styles, lists, a table and a picture", phrase="respectful duck", min_pages=2),
    "docling/lorem_ipsum.docx": ok("DOCX of lorem ipsum paragraphs", phrase="Lorem ipsum"),
    "docling/powerpoint_sample.pptx": ok(
        "3-slide deck with shapes and lists", min_pages=3, section=("Second slide title", "Bar")),
    "docling/xlsx_01.xlsx": ok("4-sheet workbook; the sheet name roots each section path", min_pages=4, category="Table", section=("Sheet4",)),
    "docling/eml_with_attachment.eml": ok("plain mail with a base64 text attachment", phrase="contains an attachment"),
    # ---- terrier simplefilecollection: the same lorem ipsum in every format
    "terrier/simplefilecollection-document.doc": legacy_office("Word 97 document"),
    "terrier/simplefilecollection-document.docx": ok("lorem ipsum DOCX", phrase="Lorem ipsum"),
    "terrier/simplefilecollection-document.html": ok("lorem ipsum HTML; <title> is the first sentence", phrase="At vero eos"),
    "terrier/simplefilecollection-document.pdf": ok("2-page lorem ipsum PDF", phrase="Lorem ipsum", min_pages=2),
    "terrier/simplefilecollection-document.ppt": legacy_office("PowerPoint 97 deck"),
    "terrier/simplefilecollection-document.pptx": ok("2-slide lorem ipsum deck", phrase="Lorem ipsum", min_pages=2),
    "terrier/simplefilecollection-document.txt": ok("lorem ipsum text, no final newline", phrase="Lorem ipsum"),
    "terrier/simplefilecollection-document.xls": ok("Excel 97 workbook (xlrd)", phrase="Lorem ipsum"),
    "terrier/simplefilecollection-document.xlsx": ok("lorem ipsum workbook", phrase="Lorem ipsum"),
}

HAS_SOFFICE = shutil.which("soffice") is not None


def expected_reason(expected: Expected) -> ReasonCode | None:
    """The reason this fixture must fail with here (None: it must parse)."""
    return None if expected.needs_soffice and HAS_SOFFICE else expected.reason
