"""Detect (and optionally redact) personal data before anything is embedded or stored.

Detected kinds: email addresses, phone numbers, payment card numbers (only
digit runs that pass the Luhn check, so order numbers and ISBNs don't count)
and IBANs (only those that pass the ISO 13616 mod-97 check). Detection tags
every chunk of the document with the kinds found (``pii`` payload field);
redaction replaces each match with ``[EMAIL]``, ``[PHONE]``, ``[CARD]`` or
``[IBAN]`` in the elements themselves, so neither the vectors, the stored text
nor the registry ever hold the original.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from fathom.ingest.document import ParsedDocument

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
CARD_RE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
# International or national numbers with separators; at least 9 digits so years and counts don't match.
PHONE_RE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){2,4}(?![\w])")


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, ch in enumerate(digits):
        d = int(ch)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    s = candidate.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _cards(text: str) -> list[tuple[int, int]]:
    out = []
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            out.append(m.span())
    return out


def _ibans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in IBAN_RE.finditer(text) if iban_ok(m.group())]


def _phones(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in PHONE_RE.finditer(text) if len(re.sub(r"\D", "", m.group())) >= 9]


def find_pii(text: str) -> dict[str, list[tuple[int, int]]]:
    """Spans per kind. Cards and IBANs are checked before phones so one number isn't reported twice."""
    found: dict[str, list[tuple[int, int]]] = {
        "email": [m.span() for m in EMAIL_RE.finditer(text)],
        "card": _cards(text),
        "iban": _ibans(text),
    }
    taken = [s for spans in found.values() for s in spans]
    found["phone"] = [s for s in _phones(text) if not any(a < s[1] and s[0] < b for a, b in taken)]
    return {k: v for k, v in found.items() if v}


_PLACEHOLDER_RE = re.compile(r"\[(EMAIL|PHONE|CARD|IBAN)\]")


def redacted_kinds(text: str) -> set[str]:
    """PII kinds whose placeholders appear in already-redacted text.

    A reindex rebuilds from the registry's stored elements, which are redacted
    if redaction was on at ingest; scanning them finds the placeholders, not the
    data, so the kinds are read back from the placeholders.
    """
    return {m.group(1).lower() for m in _PLACEHOLDER_RE.finditer(text)}


def redact(text: str, spans: dict[str, list[tuple[int, int]]]) -> str:
    marks = sorted(((a, b, f"[{kind.upper()}]") for kind, ss in spans.items() for a, b in ss), reverse=True)
    for a, b, label in marks:
        text = text[:a] + label + text[b:]
    return text


@dataclass(frozen=True, slots=True)
class PiiScanner:
    redact: bool = False

    def apply(self, doc: ParsedDocument) -> tuple[ParsedDocument, set[str]]:
        """The document (redacted if configured) and the PII kinds found in it."""
        kinds: set[str] = set()
        elements = []
        for el in doc.elements:
            spans = find_pii(el.text)
            kinds.update(spans)
            if self.redact:
                path = tuple(redact(p, find_pii(p)) for p in el.section_path)
                el = replace(el, text=redact(el.text, spans) if spans else el.text, section_path=path)
            elements.append(el)
        if not self.redact or not kinds:
            return doc, kinds
        return replace(doc, elements=elements, title=redact(doc.title, find_pii(doc.title)) if doc.title else None), kinds
