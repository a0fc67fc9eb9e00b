"""Two-stage pipelining of batches: prepare the next batch while the previous one is written.

Ingestion is encoder-bound: on a small machine the encoder (onnxruntime,
which releases the GIL) should run back to back. The other half of a batch's
work - BM25 vectors, payloads, the store's upsert and the registry rows - is
CPU and I/O that can run beside the next batch's encoder calls. So the caller's
thread prepares batches (parse, chunk, encode) and one worker thread writes
them, one batch behind; ``done`` runs in the caller's thread, in order, once a
batch is written (progress hooks and cache invalidation see written batches
only).

An exception in either stage stops the loop after the batch in flight has
finished (nothing is left half-running in the background) and is re-raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
P = TypeVar("P")
R = TypeVar("R")


def overlapped(batches: Iterable[T], prepare: Callable[[T], P], write: Callable[[P], R],
               done: Callable[[T, R], None] = lambda batch, result: None, *, enabled: bool = True) -> None:
    """Run ``write(prepare(b))`` for every batch, ``write`` of batch n beside ``prepare`` of batch n + 1."""
    if not enabled:
        for batch in batches:
            done(batch, write(prepare(batch)))
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fathom-write") as pool:
        pending: tuple[T, Future[R]] | None = None
        for batch in batches:
            prepared = prepare(batch)
            if pending is not None:
                done(pending[0], pending[1].result())
            pending = (batch, pool.submit(write, prepared))
        if pending is not None:
            done(pending[0], pending[1].result())
