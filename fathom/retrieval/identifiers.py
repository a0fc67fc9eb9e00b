"""The grammar of every identifier a client sends: tag keys, filter keys and values, document ids.

One module, so that what ingestion accepts is exactly what a filter can name, and every check is a full
match (``re.fullmatch``: a ``$`` anchor would accept a trailing newline). Tenant ids are checked by
:class:`fathom.retrieval.tenancy.Tenant`, with the same full-match rule.

* **Tag keys**: 1-64 characters of ``[a-z0-9_-]``. No ``.``: the store reads ``tags.a.b`` as the nested path
  ``tags -> a -> b``, so a dotted key could be written but never filtered on; it is refused at ingest.
* **Filter keys**: ``document_id``, ``filetype``, ``language``, ``source``, ``section``, ``page`` or
  ``tags.<tag key>``; values are strings (at most 1,024 characters), 64-bit integers, booleans, or lists of
  at most 100 strings or integers ("any of").
* **Document ids**: 1-512 characters, no path-traversal shape (``.``/``..`` segments, a leading ``/``, a
  backslash, a drive letter), no control, format or separator characters (C0/C1 controls such as U+0085,
  bidi overrides such as U+202E, zero-width characters such as U+200B, U+2028/9), and no lookalike of a
  path character (fullwidth ``．``/``／``/``＼``, division and fraction slashes, ...): such an id is refused
  rather than silently rewritten, so the id a client sent is the id it gets back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

TAG_KEY = re.compile(r"[a-z0-9_-]{1,64}")
TAG_KEY_RULE = "1-64 characters of [a-z0-9_-]"
MAX_TAGS = 32
MAX_TAG_VALUE_CHARS = 256

# Payload keys a caller may filter on besides ``tags.<key>``. ``tenant_id`` is deliberately absent: the tenant
# comes from authentication only.
FILTERABLE_KEYS = frozenset({"document_id", "filetype", "language", "source", "section", "page"})
FILTER_KEY_RULE = f"one of {sorted(FILTERABLE_KEYS)} or tags.<key> with a key of {TAG_KEY_RULE}"
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
MAX_FILTER_VALUES = 100
MAX_FILTER_STRING_CHARS = 1024
FILTER_KEY_PATTERN = f"^(?:{'|'.join(sorted(FILTERABLE_KEYS))}|tags\\.{TAG_KEY.pattern})$"


def filters_json_schema() -> dict[str, Any]:
    """The filter grammar as JSON Schema (for the OpenAPI document; the checks below are what the API runs)."""
    string = {"type": "string", "maxLength": MAX_FILTER_STRING_CHARS}
    integer = {"type": "integer", "minimum": INT64_MIN, "maximum": INT64_MAX}
    listed = {"minItems": 1, "maxItems": MAX_FILTER_VALUES}
    value = {"anyOf": [string, integer, {"type": "boolean"}, {"type": "array", "items": string, **listed},
                       {"type": "array", "items": integer, **listed}]}
    return {"anyOf": [{"type": "object", "propertyNames": {"pattern": FILTER_KEY_PATTERN},
                       "additionalProperties": value}, {"type": "null"}]}

MAX_DOCUMENT_ID_CHARS = 512
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:")
# Characters that look like a path separator or a dot and are not one: they would let an id display as a
# traversal (``..／etc``) while passing the ASCII checks. NFKC maps the fullwidth and small forms to ASCII;
# these are the ones it leaves alone.
_PATH_CHARS = "./\\:"
_ELLIPSIS = "\u2026"     # NFKC "...": common in file names, and not a traversal segment
_PATH_LOOKALIKES = frozenset("\u2215\u2044\u29f8\u29f9\u2216\u29f5\u3002\uff61\u2024\u2025\u0589\u06d4\u2e31")

# Letters (category Lo) that render as nothing: Hangul fillers and the braille blank. Not format characters, so
# a category check misses them; they pad or split words invisibly.
INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def tag_key_problem(key: object) -> str | None:
    if not isinstance(key, str) or TAG_KEY.fullmatch(key) is None:
        return f"invalid tag key {key!r}: use {TAG_KEY_RULE}"
    return None


def validate_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """User tags: short lowercase keys, scalar values (kept as strings); rejected loudly rather than coerced."""
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags per document")
    out = {}
    for k, v in tags.items():
        problem = tag_key_problem(k)
        if problem:
            raise ValueError(problem)
        if not isinstance(v, (str, int, float, bool)) or len(str(v)) > MAX_TAG_VALUE_CHARS:
            raise ValueError(f"invalid value for tag {k!r}: a string of at most {MAX_TAG_VALUE_CHARS} chars")
        out[k] = str(v)
    return out


def filter_key_problem(key: object) -> str | None:
    if isinstance(key, str) and (key in FILTERABLE_KEYS or (key.startswith("tags.") and TAG_KEY.fullmatch(key[5:]))):
        return None
    return f"cannot filter on {key!r}: use {FILTER_KEY_RULE}"


def _scalar_problem(key: str, value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT64_MIN <= value <= INT64_MAX else f"filter {key!r}: integers must fit in 64 bits"
    if isinstance(value, str):
        return None if len(value) <= MAX_FILTER_STRING_CHARS else \
            f"filter {key!r}: strings are at most {MAX_FILTER_STRING_CHARS} characters"
    return f"filter {key!r}: values are strings, integers or booleans, or lists of strings or integers"


def filter_problem(key: object, value: object) -> str | None:
    """Why ``key: value`` is not a valid filter condition, or None."""
    problem = filter_key_problem(key)
    if problem:
        return problem
    assert isinstance(key, str)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if not 0 < len(value) <= MAX_FILTER_VALUES:
            return f"filter {key!r}: a list holds 1-{MAX_FILTER_VALUES} values"
        if any(isinstance(v, bool) or not isinstance(v, (str, int)) for v in value):
            return f"filter {key!r}: a list holds strings or integers"
        return next((p for v in value if (p := _scalar_problem(key, v))), None)
    return _scalar_problem(key, value)


def document_id_problem(document_id: str) -> str | None:
    """Why ``document_id`` is refused, or None.

    Ids are opaque keys, never paths here; but they default to upload file
    names and callers may turn them into paths (or links, or log lines), so
    traversal shapes, invisible or control characters and lookalikes of path
    characters are refused rather than stored.
    """
    if not 0 < len(document_id) <= MAX_DOCUMENT_ID_CHARS:
        return f"document ids are 1-{MAX_DOCUMENT_ID_CHARS} characters"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for ch in document_id):
        return "document ids cannot contain control, format (zero-width, bidi) or unassigned characters"
    if any(ch in INVISIBLE_LETTERS for ch in document_id):
        return "document ids cannot contain invisible filler characters (Hangul fillers, braille blank)"
    if any(ch in _PATH_LOOKALIKES or (ch not in _PATH_CHARS and ch != _ELLIPSIS and any(
            c in _PATH_CHARS for c in unicodedata.normalize("NFKC", ch))) for ch in document_id):
        return "document ids cannot contain lookalikes of path characters (fullwidth dots or slashes, ...)"
    if document_id.startswith("/") or "\\" in document_id or _WINDOWS_DRIVE.match(document_id):
        return "document ids cannot be absolute paths or contain backslashes"
    if any(part in (".", "..") for part in document_id.split("/")):
        return "document ids cannot contain '.' or '..' path segments"
    return None
