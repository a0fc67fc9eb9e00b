"""What every format family's handler returns, and how a format is described.

``unstructured`` partitioners are imported inside the handlers: importing the
PDF one alone pulls in cv2, onnxruntime, matplotlib and pandas (seconds),
which a process that only needs SUPPORTED_EXTENSIONS should not pay for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unstructured.documents.elements import Element as UElement


@dataclass(slots=True)
class _Raw:
    """What a format handler extracted, before normalisation."""

    elements: list[UElement]
    title: str | None = None                       # from document metadata, if any
    metadata: dict[str, object] = field(default_factory=dict)


Handler = Callable[[bytes, str], _Raw]


@dataclass(frozen=True, slots=True)
class _Format:
    """One supported input format and how to parse it."""

    name: str
    mime: str
    extensions: tuple[str, ...]
    handler: Handler
    aliases: tuple[str, ...] = ()                  # other MIME types that mean this format
    paged: bool = False                            # pages are print pages: running heads repeat on them
    page_sections: bool = False                    # each page (slide, sheet) starts its own section tree
    infer_headings: bool = True                    # trust Titles that unstructured guessed from plain text
    needs_soffice: bool = False
