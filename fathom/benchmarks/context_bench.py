"""``fathom bench context``: how much judged evidence a token budget buys, naive top-k truncation vs packing.

For each dataset (SciFact, CACM; indexed through the real ingest path,
``quality.build_index``) every judged query is retrieved once (hybrid,
``top_k`` chunks, guard thresholds at zero so that every method packs the
same candidates), then packed at each budget by:

* ``naive``: the chunks in ranked order, whole while they fit, the first
  one that does not cut to the words that do, then stop (what an app does
  with top-k and a tokenizer);
* ``default``: the assembler with the request defaults (merge, dedup, trim, 160-token passage cap,
  order by score, no expansion, no context string);
* each option by name: ``neighbours``, ``section`` (expand), ``document``,
  ``edges`` (order), ``no-dedup``, ``mmr`` (diversity 0.3), ``no-trim``,
  ``whole-chunks`` (no cap per passage: fewer sources, more of each),
  ``context`` (include_context: the string with its citation markup counts).

**Evidence recall** is the share of queries whose context holds judged
evidence: for at least one judged-relevant document, the context contains at
least ``min(400, half of the document)`` of its characters (400 characters is
3-5 sentences; half covers short documents such as CACM's title-only
records). The same rule and the same character accounting (the union of the
spans the context took from the document) apply to every method; a
near-duplicate that packing collapsed into a passage (listed in its
``duplicates``) counts with its own span, since its text is in the context.
``tokens_used`` is the mean count of what was packed; every packed context
is checked against its budget (``over_budget`` counts violations; must be 0).
``p95_ms`` is the in-process wall-clock P95 of the packing itself (the
assembler's ``run``, the stored-document lookup included). Each method is
timed as served, with its process caches (stored documents; token counts
of exact texts), warmed by the *other* half of the queries only (two folds;
see ``_packed``), and ``default-registry`` with none: every document read
from the registry, every text counted, every time;
``p95_cpu_ms`` the same in CPU time of the packing thread (on a loaded machine
the wall clock mostly measures waiting for a core), beside the P95 of the
retrieval that produced the candidates in the same run.

The approximate tokenizer is measured against the real one on the same
passages: relative error per text, and whether contexts packed with the
approximation stay within the budget when the real tokenizer counts them.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fathom.benchmarks.quality import OPEN_POLICY, build_index
from fathom.config import Settings
from fathom.ingest.registry import Registry
from fathom.ingest.stored_text import RegistryDocuments
from fathom.retrieval.components import build_pipeline
from fathom.retrieval.context import (ContextAssembler, ContextChunk, ContextInput, ContextOptions, ContextOutput,
                                      DocumentCache, load_tokenizer)
from fathom.retrieval.context.facts import chunk_facts
from fathom.retrieval.context.sketch import VocabularySketch
from fathom.retrieval.context.tokens import APPROX, PromptTokenizer
from fathom.retrieval.guard import Status
from fathom.retrieval.ir_metrics import percentile
from fathom.retrieval.query_pipeline import RetrievalQuery

BUDGETS = (256, 512, 1024, 2048)
EVIDENCE_MIN_CHARS = 400
EVIDENCE_MIN_SHARE = 0.5
Log = Callable[[str], None]

# The default packing with every stored document read from the registry and every chunk counted (no process
# caches): what a first sight of the head's chunks costs.
UNCACHED = "default-registry"

# The methods besides ``naive``: a name and the options that differ from the request defaults.
METHODS: dict[str, dict[str, Any]] = {
    "default": {},
    "neighbours": {"expand": "neighbours"},
    "section": {"expand": "section"},
    "document": {"order": "document"},
    "edges": {"order": "edges"},
    "no-dedup": {"dedup": False},
    "mmr": {"diversity": 0.3},
    "no-trim": {"trim": False},
    "whole-chunks": {"max_passage_tokens": None},
    "context": {"include_context": True},
    UNCACHED: {},
}

Span = tuple[str, int, int]   # document id, char start, char end


@dataclass
class Packed:
    spans: list[Span]
    tokens: int
    ms: float                 # wall clock
    cpu_ms: float             # this thread's CPU time (what the packing costs, whatever the machine's load)


def naive(chunks: Sequence[ContextChunk], budget: int, tokenizer: PromptTokenizer) -> Packed:
    """Top-k truncation: whole chunks in ranked order; the first that does not fit is cut to the words that do."""
    t0, c0 = time.perf_counter(), time.thread_time()
    spans, used = [], 0
    for c in chunks:
        n = tokenizer.count(c.text)
        if used + n <= budget:
            spans.append((c.document_id, c.char_start or 0, c.char_end or 0))
            used += n
            continue
        words = c.text.split(" ")
        lo, hi, keep = 0, len(words), 0
        while lo <= hi:                       # the longest word prefix within the rest of the budget
            mid = (lo + hi) // 2
            if tokenizer.count(" ".join(words[:mid])) <= budget - used:
                keep, lo = mid, mid + 1
            else:
                hi = mid - 1
        if keep:
            text = " ".join(words[:keep])
            spans.append((c.document_id, c.char_start or 0, (c.char_start or 0) + len(text)))
            used += tokenizer.count(text)
        break
    return Packed(spans, used, (time.perf_counter() - t0) * 1000.0, (time.thread_time() - c0) * 1000.0)


def evidence(spans: Sequence[Span], relevant: dict[str, int]) -> tuple[bool, bool]:
    """(enough of a relevant document is in the context, any of it is): ``relevant`` maps doc id -> text length."""
    covered: dict[str, list[tuple[int, int]]] = {}
    for doc, s, e in spans:
        if doc in relevant and e > s:
            covered.setdefault(doc, []).append((s, e))
    enough = False
    for doc, parts in covered.items():
        total, end = 0, -1
        for s, e in sorted(parts):           # union of the spans (passages of one document never overlap, chunks may)
            if e > end:
                total += e - max(s, end)
                end = e
        need = min(EVIDENCE_MIN_CHARS, math.ceil(EVIDENCE_MIN_SHARE * relevant[doc]))
        enough = enough or total >= need
    return enough, bool(covered)


def tokenizer_error(texts: Sequence[str], real: PromptTokenizer, approx: PromptTokenizer) -> dict[str, Any]:
    """Relative error (approx - real) / real of the approximation, over all texts and over texts of 100+ tokens."""
    r = np.array([real.count(t) for t in texts], dtype=float)
    a = np.array([approx.count(t) for t in texts], dtype=float)
    keep = r > 0
    err = (a[keep] - r[keep]) / r[keep]
    long = r[keep] >= 100

    def stats(e: np.ndarray) -> dict[str, float]:
        if not e.size:
            return {}
        return {"texts": int(e.size), "mean": round(float(e.mean()), 4), "mean_abs": round(float(np.abs(e).mean()), 4),
                "worst_under": round(float(e.min()), 4), "worst_over": round(float(e.max()), 4),
                "share_under": round(float((e < 0).mean()), 4)}
    return {"real": real.name, "approx": approx.name, "all": stats(err), "100_plus_tokens": stats(err[long])}


class _Dataset:
    """One dataset's index, candidates per query and relevant-document lengths."""

    def __init__(self, path: Path, settings: Settings, split: str, top_k: int, max_queries: int | None,
                 keep: Path | None, log: Log):
        self.index = build_index(path, settings, split=split, state_dir=keep, log=log)
        self.name = self.index.dataset.name
        self.registry = Registry(self.index.settings.registry)
        self.documents = RegistryDocuments(self.registry)
        pipeline = build_pipeline(self.index.settings, self.index.store, self.index.models)
        queries = self.index.dataset.judged_queries
        keys = sorted(queries)
        if max_queries:
            random.Random(13).shuffle(keys)
            keys = keys[:max_queries]
        self.queries = {q: queries[q] for q in keys}
        qrels = self.index.dataset.qrels
        lengths = {rec.document_id: len("\n\n".join(e.text for e in elements))
                   for rec, elements in self.registry.with_elements(
                       self.index.tenant, sorted({d for q in keys for d in qrels[q]}))}
        self.relevant = {q: {d: lengths[d] for d in qrels[q] if d in lengths} for q in keys}
        for text in list(self.queries.values())[:5]:           # warm-up
            pipeline.retrieve(RetrievalQuery(self.index.tenant, text, top_k=top_k, policy=OPEN_POLICY))
        self.chunks: dict[str, list[ContextChunk]] = {}
        self.status: dict[str, Status] = {}
        self.retrieve_ms: list[float] = []
        for qid, text in self.queries.items():
            t0 = time.perf_counter()
            res = pipeline.retrieve(RetrievalQuery(self.index.tenant, text, top_k=top_k, policy=OPEN_POLICY))
            self.retrieve_ms.append((time.perf_counter() - t0) * 1000.0)
            self.chunks[qid] = [ContextChunk.from_candidate(c, i) for i, c in enumerate(res.candidates)]
            self.status[qid] = res.status

    def close(self) -> None:
        self.registry.close()
        self.index.close()


def _row(dataset: str, budget: int, method: str, packs: list[Packed], hits: list[tuple[bool, bool]]) -> dict[str, Any]:
    return {"dataset": dataset, "budget": budget, "method": method,
            "evidence_recall": round(sum(h[0] for h in hits) / len(hits), 4),
            "evidence_recall_any": round(sum(h[1] for h in hits) / len(hits), 4),
            "tokens_used": round(sum(p.tokens for p in packs) / len(packs), 1),
            "p95_ms": round(percentile([p.ms for p in packs], 95), 3),
            "p50_ms": round(percentile([p.ms for p in packs], 50), 3),
            "p95_cpu_ms": round(percentile([p.cpu_ms for p in packs], 95), 3),
            "over_budget": sum(p.tokens > budget for p in packs), "queries": len(packs)}


def _assembler(ds: _Dataset, tokenizer: PromptTokenizer, cached: bool) -> ContextAssembler:
    """A new assembler as a process would build it: with its process caches (the served settings) or none."""
    cfg = ds.index.settings.context
    if not cached:
        return ContextAssembler(tokenizer, ds.documents)
    return ContextAssembler(tokenizer, ds.documents,
                            DocumentCache(cfg.document_cache_chars) if cfg.document_cache_chars else None,
                            count_cache_chars=cfg.count_cache_chars)


def _input(ds: _Dataset, qid: str, opts: ContextOptions) -> ContextInput:
    return ContextInput(ds.index.tenant, ds.queries[qid], ds.status[qid], ds.chunks[qid], opts)


def _packed(ds: _Dataset, tokenizer: PromptTokenizer, opts: ContextOptions,
            cached: bool) -> dict[str, tuple[ContextOutput, float, float]]:
    """Each query's context with its wall and CPU ms, in two folds: a new assembler serves the other half of the
    queries first (same options), then the timed half. A question is timed on caches warmed by *other* questions,
    as on a server that has been answering for a while, never by itself (at another budget, say), which would
    make the pieces it cuts look free; without caches (``default-registry``) every question starts cold."""
    keys = list(ds.queries)
    folds = [keys[0::2], keys[1::2]]
    out: dict[str, tuple[ContextOutput, float, float]] = {}
    for timed, warm in ((folds[0], folds[1]), (folds[1], folds[0])):
        assembler = _assembler(ds, tokenizer, cached)
        if cached:
            for qid in warm:
                assembler.run(_input(ds, qid, opts))
        for qid in timed:
            inp = _input(ds, qid, opts)
            t0, c0 = time.perf_counter(), time.thread_time()
            res = assembler.run(inp)
            out[qid] = (res, (time.perf_counter() - t0) * 1000.0, (time.thread_time() - c0) * 1000.0)
    return out


def run_dataset(ds: _Dataset, tokenizer: PromptTokenizer, budgets: Sequence[int], methods: dict[str, dict[str, Any]],
                log: Log) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Rows for one dataset, the passage texts it packed (for the tokenizer error), and approx-packing checks."""
    approx = ContextAssembler(load_tokenizer(APPROX), ds.documents)
    rows: list[dict[str, Any]] = []
    texts: set[str] = set()
    over_real: dict[int, dict[str, float]] = {}
    warmup = _assembler(ds, tokenizer, cached=False)
    for qid in list(ds.queries)[:5]:                           # warm-up of the packing code paths (not of caches)
        warmup.run(_input(ds, qid, ContextOptions(max_tokens=budgets[-1])))
    for budget in budgets:
        packs = [naive(ds.chunks[q], budget, tokenizer) for q in ds.queries]
        rows.append(_row(ds.name, budget, "naive", packs, [evidence(p.spans, ds.relevant[q])
                                                            for p, q in zip(packs, ds.queries)]))
        for name, change in methods.items():
            opts = replace(ContextOptions(max_tokens=budget), **change)
            timed = _packed(ds, tokenizer, opts, cached=name != UNCACHED)
            packs, hits = [], []
            for qid in ds.queries:
                out, ms, cpu = timed[qid]
                spans = [(p.document_id, p.char_start or 0, p.char_end or 0) for p in out.passages]
                # A collapsed duplicate's text is in the context (it is the same text, and the passage cites it).
                spans += [(d.document_id, d.char_start or 0, d.char_end or 0) for p in out.passages
                          for d in p.duplicates]
                packs.append(Packed(spans, out.tokens_used, ms, cpu))
                hits.append(evidence(spans, ds.relevant[qid]))
                if name == "default":
                    texts.update(p.text for p in out.passages)
            rows.append(_row(ds.name, budget, name, packs, hits))
        # The approximation's budget, counted by the real tokenizer (what the app's LLM would see).
        ratios = []
        for qid in ds.queries:
            out = approx.run(_input(ds, qid, ContextOptions(max_tokens=budget)))
            ratios.append(sum(tokenizer.count(p.text) for p in out.passages) / budget)
        over_real[budget] = {"max_real_over_budget": round(max(ratios), 4),
                             "mean_real_over_budget": round(float(np.mean(ratios)), 4),
                             "contexts_over_budget": int(sum(r > 1 for r in ratios))}
        done = rows[-len(methods) - 1:]
        log(" ".join(f"{r['method']}={r['evidence_recall']:.3f}/{r['tokens_used']:.0f}t" for r in done)
            + f"  [{ds.name} @ {budget}]")
    return rows, sorted(texts), over_real


def counting_with(settings: Settings, tokenizer: str) -> Settings:
    """``settings`` with ``tokenizer`` configured: the one ingest counts chunks with (facts.ChunkFacts), as a
    service whose app configured it would, so the benchmark's index carries the counts it packs with."""
    return settings.model_copy(update={"context": settings.context.model_copy(update={"tokenizer": tokenizer})})


def run_context_bench(datasets: Sequence[Path], settings: Settings, *, budgets: Sequence[int] = BUDGETS,
                      split: str = "test", top_k: int = 20, max_queries: int | None = None,
                      tokenizer: str = "cl100k_base", keep_index: Path | None = None,
                      log: Log = print) -> dict[str, Any]:
    tok = load_tokenizer(tokenizer)
    settings = counting_with(settings, tokenizer)
    rows: list[dict[str, Any]] = []
    meta: dict[str, Any] = {"tokenizer": tok.name, "top_k": top_k, "split": split, "budgets": list(budgets),
                            "evidence_rule": f"min({EVIDENCE_MIN_CHARS} chars, {EVIDENCE_MIN_SHARE:g} of the document)",
                            "datasets": {}}
    all_texts: list[str] = []
    for path in datasets:
        ds = _Dataset(Path(path), settings, split, top_k, max_queries,
                      keep_index / Path(path).name if keep_index else None, log)
        try:
            ds_rows, texts, over = run_dataset(ds, tok, budgets, METHODS, log)
            rows += ds_rows
            all_texts += texts
            all_texts += sorted({c.text for cs in ds.chunks.values() for c in cs})
            meta["datasets"][ds.name] = {
                "queries": len(ds.queries), "chunks": ds.index.chunks,
                "retrieve_p95_ms": round(percentile(ds.retrieve_ms, 95), 2),
                "retrieve_p50_ms": round(percentile(ds.retrieve_ms, 50), 2),
                "no_relevant_context": sum(s is Status.NO_RELEVANT_CONTEXT for s in ds.status.values()),
                "approx_packing_vs_real": over,
                # Chunks whose ingest-time counts are this tokenizer's (an index built with another one: ~0, slower).
                "facts_applied": round(_facts_share(ds, tok), 4),
                "sketches_present": round(_sketch_share(ds), 4),
                "facts_cost": _facts_cost(ds, tok)}
        finally:
            ds.close()
    if tok.name != APPROX:
        meta["tokenizer_error"] = tokenizer_error(sorted(set(all_texts)), tok, load_tokenizer(APPROX))
    return {"rows": rows, "meta": meta}


def _facts_share(ds: _Dataset, tok: PromptTokenizer) -> float:
    chunks = [c for cs in ds.chunks.values() for c in cs]
    return sum(c.facts is not None and c.facts.applies(c.text, tok) for c in chunks) / max(len(chunks), 1)


def _sketch_share(ds: _Dataset) -> float:
    """Share of the retrieved chunks that carry a vocabulary sketch (an index built before sketches has none)."""
    chunks = [c for cs in ds.chunks.values() for c in cs]
    return sum(c.sketch is not None for c in chunks) / max(len(chunks), 1)


def _facts_cost(ds: _Dataset, tok: PromptTokenizer) -> dict[str, float]:
    """What ingest pays for the facts and the vocabulary sketches: ``chunk_facts`` and ``VocabularySketch.of_text``
    over every corpus text (about the chunks' characters)."""
    texts = [d.text for d in ds.index.dataset.corpus()]
    t0 = time.process_time()
    for text in texts:
        chunk_facts(text, tok)
    t1 = time.process_time()
    for text in texts:
        VocabularySketch.of_text(text)
    return {"documents": len(texts), "chars": sum(map(len, texts)), "cpu_s": round(t1 - t0, 2),
            "sketch_cpu_s": round(time.process_time() - t1, 2)}


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| dataset | budget | method | evidence recall | any evidence | tokens used | P95 ms | P95 CPU ms |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['budget']} | {r['method']} | {r['evidence_recall']:.4f} | "
                     f"{r['evidence_recall_any']:.4f} | {r['tokens_used']:.0f} | {r['p95_ms']:.2f} | "
                     f"{r['p95_cpu_ms']:.2f} |")
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: Path, methods: Sequence[str] | None = None) -> None:
    """Evidence recall against tokens used, one panel per dataset, one line per method (budgets as points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["dataset"] for r in rows))
    methods = list(methods or dict.fromkeys(r["method"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(6.2 * len(names), 4.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for i, m in enumerate(methods):
            pts = sorted((r["tokens_used"], r["evidence_recall"], r["budget"]) for r in rows
                         if r["dataset"] == name and r["method"] == m)
            if not pts:
                continue
            style = {"naive": ("k", "--", "s"), "default": ("C0", "-", "o")}.get(m, (plt.cm.tab20(2 * i + 3), "-", "."))
            main = m in ("naive", "default")
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=style[0], linestyle=style[1], marker=style[2],
                    label=m, linewidth=2 if main else 1, alpha=1 if main else 0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens used (mean; budgets 256-2048)")
        ax.set_ylabel("evidence recall")
        ax.set_title(f"{name}: judged evidence in the packed context")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
