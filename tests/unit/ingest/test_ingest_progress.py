"""Ingest rates, overlapped batches and length-bucketed encoder batches (no timing: a fake clock)."""

from __future__ import annotations

import threading

import pytest

from fathom.ingest.overlap import overlapped
from fathom.ingest.progress import RateMeter
from fathom.retrieval.models.embedder import batches_by_tokens


def test_rates_and_eta_from_the_run_so_far():
    now = [100.0]
    meter = RateMeter(total=100, clock=lambda: now[0])
    now[0] = 110.0
    r = meter.update(docs=20, chunks=50)
    assert (r.docs_per_s, r.chunks_per_s, r.eta_s) == (2.0, 5.0, 40.0)
    assert r.as_progress() == {"done": 20, "total": 100, "chunks": 50, "docs_per_s": 2.0, "chunks_per_s": 5.0,
                               "eta_s": 40.0}
    assert "2.0 docs/s, 5.0 chunks/s, ETA 40 s" == r.describe()


def test_no_eta_without_a_total_or_before_the_first_document():
    now = [0.0]
    meter = RateMeter(total=-1, clock=lambda: now[0])
    now[0] = 5.0
    assert meter.update(10, 10).eta_s is None
    assert RateMeter(total=10, clock=lambda: 1.0).update(0, 0).eta_s is None


def test_overlapped_writes_run_beside_the_next_prepare_and_finish_in_order():
    seen: list[tuple[str, int]] = []
    writer_threads: set[int] = set()
    second_prepared = threading.Event()

    def prepare(b: int) -> int:
        seen.append(("prepare", b))
        if b == 1:
            second_prepared.set()
        return b * 10

    def write(p: int) -> int:
        writer_threads.add(threading.get_ident())
        if p == 0:   # the first write waits until batch 1 is being prepared: they overlap
            assert second_prepared.wait(5)
        return p + 1

    done: list[tuple[int, int]] = []
    overlapped(range(3), prepare, write, lambda b, r: done.append((b, r)))
    assert done == [(0, 1), (1, 11), (2, 21)]
    assert threading.get_ident() not in writer_threads


def test_overlapped_reraises_a_write_error_and_stops():
    prepared: list[int] = []

    def write(p: int) -> None:
        if p == 1:
            raise RuntimeError("store down")

    with pytest.raises(RuntimeError, match="store down"):
        overlapped(range(10), lambda b: prepared.append(b) or b, write)
    assert len(prepared) <= 3


def test_batches_by_tokens_bound_the_padded_size():
    lengths = [5, 300, 40, 41, 39, 10, 12, 200, 7]
    batches = batches_by_tokens(lengths, max_tokens=128, max_rows=3)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for b in batches:
        width = max(lengths[i] for i in b)
        assert len(b) <= 3
        assert len(b) == 1 or width * len(b) <= 128
        assert lengths[b[0]] == width                      # longest first: the batch pads to its first row
