"""Ingest rates for progress bars and job records: documents/s, chunks/s and the time left.

Rates are over the whole run so far (not the last batch): batches differ a lot
in size (a PDF of 600 pages next to one-paragraph notes), and an estimate that
jumps with every batch is worse than a slow-moving one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rates:
    docs: int
    total: int                 # -1: unknown
    chunks: int
    elapsed_s: float
    docs_per_s: float
    chunks_per_s: float
    eta_s: float | None        # None until the first document is done, or when the total is unknown

    def as_progress(self) -> dict[str, float]:
        """The fields a job record's ``progress`` carries."""
        out: dict[str, float] = {"done": self.docs, "total": self.total, "chunks": self.chunks,
                                 "docs_per_s": round(self.docs_per_s, 2), "chunks_per_s": round(self.chunks_per_s, 2)}
        if self.eta_s is not None:
            out["eta_s"] = round(self.eta_s, 1)
        return out

    def describe(self) -> str:
        """One line for a progress bar."""
        eta = "-" if self.eta_s is None else f"{self.eta_s:.0f} s"
        return f"{self.docs_per_s:.1f} docs/s, {self.chunks_per_s:.1f} chunks/s, ETA {eta}"


class RateMeter:
    def __init__(self, total: int = -1, clock: Callable[[], float] = time.monotonic):
        self.total = total
        self._clock = clock
        self._start = clock()

    def update(self, docs: int, chunks: int) -> Rates:
        elapsed = max(self._clock() - self._start, 1e-9)
        docs_per_s, chunks_per_s = docs / elapsed, chunks / elapsed
        eta = None
        if self.total >= 0 and docs > 0:
            eta = max(self.total - docs, 0) / docs_per_s
        return Rates(docs, self.total, chunks, elapsed, docs_per_s, chunks_per_s, eta)
