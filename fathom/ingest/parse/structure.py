"""Elements and sections: normalised texts, headings, the section path of every element, the document title."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fathom.ingest.document import Element
from fathom.ingest.normalize import normalize_element_text
from fathom.ingest.parse.base import _Format

if TYPE_CHECKING:
    from unstructured.documents.elements import Element as UElement


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
