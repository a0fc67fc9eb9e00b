"""Peak resident memory of this process over a block of code (sampled; the kernel's high-water mark is per process
lifetime, so it cannot tell one benchmark step from the one before)."""

from __future__ import annotations

import threading
from types import TracebackType

import psutil


class PeakRss:
    """``with PeakRss() as peak: ...``, then ``peak.mb``: the largest RSS seen, sampled every ``interval_s``."""

    def __init__(self, interval_s: float = 0.1):
        self.interval_s = interval_s
        self._proc = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="fathom-peak-rss", daemon=True)
        self.bytes = 0

    def _sample(self) -> None:
        while True:
            self.bytes = max(self.bytes, self._proc.memory_info().rss)
            if self._stop.wait(self.interval_s):
                return

    def __enter__(self) -> "PeakRss":
        self.bytes = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, self._proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return round(self.bytes / 2**20, 1)
