"""Text normalisation and validation for parsed documents.

Everything here is pure text (or element-list) work with no knowledge of file
formats, so that :mod:`fathom.ingest.parse` can apply one set of rules to every
parser's output and the rules can be tested on strings built in memory.

The two questions answered here that are easy to get wrong:

* *Which encoding is this text file in?*  :func:`decode_text` decides before
  ``unstructured`` ever sees the bytes, because unstructured's own guess is a
  bare charset-normalizer call that, for example, reads Western European
  Windows-1252 text as Windows-1250 and silently turns "très" into "trčs".
* *Is there enough text to index?*  :func:`check_min_text` rejects documents
  whose normalised text is below ``ingest.min_text_chars``.
"""

from __future__ import annotations

import codecs
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from charset_normalizer import from_bytes
from charset_normalizer.md import mess_ratio
from langdetect import DetectorFactory, LangDetectException, detect_langs

from fathom.ingest.document import Element, IngestError, ReasonCode

# --------------------------------------------------------------------------- encodings

# Longest first: the UTF-32-LE BOM begins with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# Labels that browsers (WHATWG Encoding Standard) read as windows-1252, because
# documents that declare them are in practice almost always windows-1252.
_WINDOWS_1252_ALIASES = frozenset({"ascii", "us-ascii", "latin-1", "latin1", "iso-8859-1", "iso8859-1", "l1"})

# How much "messier" than charset-normalizer's best guess a windows-1252 reading
# may be and still win (see _guess_single_byte).
_CP1252_MESS_TOLERANCE = 0.01


# UTF-8 that was once decoded as Latin-1/Windows-1252 and re-encoded shows C1
# controls or the tell-tale "â€" / "Ã©" pairs, which real text never contains.
_MOJIBAKE_RE = re.compile("[\u0080-\u009f]|â€|Ã[\u0080-\u00bf]")


@dataclass(frozen=True, slots=True)
class DecodedText:
    """Text decoded from bytes, with the encoding that was used (for reports)."""

    text: str
    encoding: str
    repaired: bool = False             # double-encoded UTF-8 was undone


def _find_bom(data: bytes) -> tuple[bytes, str] | None:
    return next(((bom, encoding) for bom, encoding in _BOMS if data.startswith(bom)), None)


def bom_encoding(data: bytes) -> str | None:
    """The encoding a leading byte-order mark announces, or None."""
    found = _find_bom(data)
    return found[1] if found else None


def decode_text(data: bytes, *, declared: str | None = None) -> DecodedText:
    """Decode the bytes of a text-like file, or raise ``IngestError(ENCODING)``.

    Order, most to least trustworthy: a byte-order mark; an encoding the
    container declared (HTML ``<meta charset>``) if the bytes really decode
    with it; strict UTF-8; a statistical guess.  A leading BOM is removed.
    """
    found = _find_bom(data)
    if found:
        bom, encoding = found
        return _decode_strict(data[len(bom):], encoding)
    if declared:
        decoded = _try_declared(data, declared)
        if decoded is not None:
            return decoded
    try:
        return _repair_double_encoding(data.decode("utf-8"))
    except UnicodeDecodeError:
        pass
    return _guess_single_byte(data)


def _repair_double_encoding(text: str) -> DecodedText:
    """Undo UTF-8 that went through a Latin-1/cp1252 round trip ("1986â\x80\x931990" -> "1986–1990").

    Only when the tell-tale characters are present and the whole text maps
    back to valid UTF-8, which genuine Latin-1-range text practically never does.
    """
    if _MOJIBAKE_RE.search(text):
        for legacy in ("latin-1", "cp1252"):
            try:
                return DecodedText(text.encode(legacy).decode("utf-8"), "utf-8", repaired=True)
            except UnicodeError:
                continue
    return DecodedText(text, "utf-8")


def _decode_strict(data: bytes, encoding: str) -> DecodedText:
    """Decode with a known encoding; a BOM that lies is an encoding error, not garbage text."""
    try:
        return DecodedText(data.decode(encoding), encoding)
    except UnicodeDecodeError as exc:
        raise IngestError(ReasonCode.ENCODING, f"bytes are not valid {encoding} despite the byte-order mark: {exc}") from exc


def _try_declared(data: bytes, declared: str) -> DecodedText | None:
    """Use a declared encoding only when it exists and decodes the bytes cleanly.

    Declarations are often wrong (pages saved as windows-1252 that still say
    utf-8), so a declaration that fails is ignored rather than trusted.
    """
    label = declared.strip().lower()
    encoding = "cp1252" if label in _WINDOWS_1252_ALIASES else label
    try:
        if codecs.lookup(encoding).name == "utf-8":
            return None  # the UTF-8 step that follows also repairs double encoding
        return DecodedText(data.decode(encoding), encoding)
    except (LookupError, UnicodeDecodeError):
        return None


def _guess_single_byte(data: bytes) -> DecodedText:
    """Guess a legacy encoding with charset-normalizer, preferring windows-1252 on ties.

    On short Western European text charset-normalizer cannot tell the Latin
    code pages apart and may pick cp1250 or cp1257 (mangling è, ñ, à).
    Windows-1252 is by far the most common legacy encoding, so it wins when its
    reading is no messier than the best guess; Cyrillic, Greek or Central
    European text read as cp1252 is full of symbols inside words and loses.
    """
    best = from_bytes(data).best()
    try:
        cp1252 = data.decode("cp1252")
    except UnicodeDecodeError:
        cp1252 = None
    if cp1252 is not None and best is not None and mess_ratio(cp1252) <= best.chaos + _CP1252_MESS_TOLERANCE:
        return DecodedText(cp1252, "cp1252")
    if best is None:
        raise IngestError(ReasonCode.ENCODING, "not UTF-8 and no plausible legacy encoding was found")
    return DecodedText(str(best), best.encoding)


# --------------------------------------------------------------------------- cleaning

# Word/RTF manual line breaks (VT), form feeds and the Unicode separators are
# line breaks in disguise; keep them as such instead of deleting them.  U+2029
# counts as a plain line break, not a paragraph break: some PDF fonts map the
# space glyph to it, and a blank line between every word would wreck the text.
_LINE_BREAKS = str.maketrans({"\r": "\n", "\x0b": "\n", "\x0c": "\n", "\u2028": "\n", "\u2029": "\n", "\x85": "\n"})
# C0/C1 controls except tab and newline: they carry no text and break tokenisers and JSON consumers.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
# Invisible characters that split words for search: zero-width space, word
# joiner, BOM/ZWNBSP, soft hyphen, Mongolian vowel separator.  ZWJ and ZWNJ are
# kept: they change spelling in Persian and Indic scripts and form emoji.
_INVISIBLE_RE = re.compile("[\u200b\u2060\ufeff\u00ad\u180e]")
# Unicode spaces that should search like a plain space.
_SPACES_RE = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
# pdfminer's placeholder for a glyph with no Unicode mapping; it is not text.
_CID_RE = re.compile(r"\(cid:\d+\)")
# Latin typographic ligatures from PDF fonts; NFC keeps them, and "ﬁnd" does not match "find".
_LIGATURES = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"})

_PARAGRAPH_SPLIT_RE = re.compile(r"\n[ \t]*\n\s*")
# "docu- ment": pdfminer joins a hyphenated line break into "- ".  Only a
# lowercase continuation is joined, and not before a conjunction, so that
# "pre- and post-processing" survives.
_PDF_HYPHEN_RE = re.compile(r"(\w\w)- (?!(?:and|or|nor|und|oder|et|ou|y|o|e)\b)([a-zà-öø-ÿ])")

# unstructured categories whose line structure and indentation are content.
_PRESERVE_LINES = frozenset({"CodeSnippet", "Formula"})


def clean_text(text: str) -> str:
    """Character-level clean-up shared by every element: NFC, line breaks, invisible and control characters."""
    text = text.replace("\r\n", "\n").translate(_LINE_BREAKS)
    text = _CONTROL_RE.sub("", text)
    text = _INVISIBLE_RE.sub("", text)
    text = _CID_RE.sub("", text)
    text = _SPACES_RE.sub(" ", text)
    return unicodedata.normalize("NFC", text.translate(_LIGATURES))


def normalize_whitespace(text: str) -> str:
    """Collapse whitespace but keep paragraph breaks.

    A blank line separates paragraphs and is kept as exactly one blank line;
    single line breaks inside a paragraph are wrapping and become spaces.
    """
    paragraphs = (" ".join(p.split()) for p in _PARAGRAPH_SPLIT_RE.split(text))
    return "\n\n".join(p for p in paragraphs if p)


def _normalize_lines(text: str) -> str:
    """Keep line structure and indentation (code): only trailing spaces and outer blank lines go."""
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def dehyphenate(text: str) -> str:
    """Join words that a PDF line break split with a hyphen ("infor- mation" -> "information")."""
    return _PDF_HYPHEN_RE.sub(r"\1\2", text)


def normalize_element_text(text: str, category: str, *, pdf: bool = False) -> str:
    """Normalise one element's text according to its category; may return ``""``."""
    text = clean_text(text)
    if category in _PRESERVE_LINES:
        return _normalize_lines(text)
    text = normalize_whitespace(text)
    return dehyphenate(text) if pdf else text


# --------------------------------------------------------------------------- validation


def text_length(text: str) -> int:
    """Length of the text with whitespace runs counted as one space: what min_text_chars measures."""
    return len(" ".join(text.split()))


def check_min_text(text: str, min_chars: int) -> None:
    """Reject a document whose normalised text is too short to be worth indexing."""
    length = text_length(text)
    if length < min_chars:
        raise IngestError(
            ReasonCode.TOO_LITTLE_TEXT,
            f"only {length} characters of text after normalisation (minimum {min_chars})",
        )


# --------------------------------------------------------------------------- language

# langdetect is slow on long inputs and a few pages decide the language anyway.
_LANGUAGE_SAMPLE_CHARS = 10_000
# Below this many letters langdetect's answer is noise.
_LANGUAGE_MIN_LETTERS = 20


def detect_language(text: str) -> str | None:
    """Return the main language as an ISO 639-1 code ("en", "zh"), or None if unsure.

    langdetect is randomised; seeding it before each call makes the answer a
    function of the text, so re-ingesting a document never flips its language.
    """
    sample = text[:_LANGUAGE_SAMPLE_CHARS]
    if sum(ch.isalpha() for ch in sample) < _LANGUAGE_MIN_LETTERS:
        return None
    DetectorFactory.seed = 0
    try:
        best = detect_langs(sample)[0]
    except LangDetectException:
        return None
    # langdetect reports Chinese as zh-cn / zh-tw; ISO 639-1 has only "zh".
    return best.lang.split("-")[0]


# --------------------------------------------------------------------------- page furniture

# Running headers/footers sit at the top or bottom of a page in reading order.
_EDGE_ELEMENTS = 2
_FURNITURE_MAX_CHARS = 120
_FURNITURE_MIN_PAGES = 3
_FURNITURE_PAGE_SHARE = 0.5
_DIGITS_RE = re.compile(r"\d+")


def _furniture_key(text: str) -> str:
    """Compare page furniture with page numbers masked ("Page 3 of 9" == "Page 4 of 9")."""
    return _DIGITS_RE.sub("#", " ".join(text.lower().split()))


def find_repeated_furniture(elements: list[Element], *, paged: bool) -> set[int]:
    """Indices of repeated headers, footers and bare page numbers to drop; each header is kept once.

    Two simple rules.  Elements the parser classified as ``Header``/``Footer``
    (DOCX section headers, PDF running heads) are kept only the first time
    their text appears.  For paged formats, short lines among the first or last
    few elements of a page that recur on at least half of the pages (and at
    least three) are running heads too; texts are compared with digits masked,
    so "Page 3 of 9" and "Page 4 of 9" are the same line.  Furniture without a
    single letter (a page number) is dropped everywhere.
    """
    repeated = _repeated_edge_keys(elements) if paged else frozenset()
    seen: set[str] = set()
    drop: set[int] = set()
    for index, element in enumerate(elements):
        key = _furniture_key(element.text)
        if element.category not in ("Header", "Footer") and key not in repeated:
            continue
        if key in seen or not any(ch.isalpha() for ch in key):
            drop.add(index)
        seen.add(key)
    return drop


def _repeated_edge_keys(elements: Iterable[Element]) -> frozenset[str]:
    """Keys of short texts found at a page edge on enough pages to be running heads."""
    by_page: dict[int, list[Element]] = {}
    for element in elements:
        if element.page_number is not None:
            by_page.setdefault(element.page_number, []).append(element)
    if len(by_page) < _FURNITURE_MIN_PAGES:
        return frozenset()
    pages_with_key: Counter[str] = Counter()
    for page_elements in by_page.values():
        edges = page_elements[:_EDGE_ELEMENTS] + page_elements[-_EDGE_ELEMENTS:]
        pages_with_key.update({_furniture_key(e.text) for e in edges if len(e.text) <= _FURNITURE_MAX_CHARS})
    threshold = max(_FURNITURE_MIN_PAGES, math.ceil(_FURNITURE_PAGE_SHARE * len(by_page)))
    return frozenset(key for key, pages in pages_with_key.items() if pages >= threshold)
