"""``fathom reranker train`` and ``fathom reranker distil``: the glue between a corpus and the trainer.

The trainer (``fathom.training.rerank``) knows nothing of stores, tenants or
BEIR folders; this module hands it what it needs:

* a **miner**: the real hybrid pipeline (no reranker, one chunk per document),
  so hard negatives are what the reranker will face when serving;
* **corpus records**: the indexed chunks regrouped per document (a BEIR corpus
  is ingested first, into a kept index folder that benchmarks can reuse);
* **labels**: qrels of a non-test split, or a tenant's golden set; or none
  (``--mode pseudo``).

Artefacts go to ``<model_dir>/rerankers/<name>/``. Examples (full runs)::

    fathom reranker train --dataset ../shared/data/scifact --mode labelled --out scifact-l6 --time-budget-s 1800
    fathom reranker train --dataset ../shared/data/scifact --mode pseudo --out scifact-pseudo-l6
    fathom reranker train --tenant acme --mode pseudo --out acme-pseudo
    fathom reranker distil --teacher scifact-l6 --dataset ../shared/data/scifact --layers 2 --max-length 128 \\
        --out scifact-l2
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fathom.config import CROSS_ENCODER_SERVE_DEPTH
from fathom.service.core.config import Settings
from fathom.benchmarks.config import data_dir

Log = Callable[[str], None]


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))


def reranker_root(settings: Settings) -> Path:
    return settings.model_dir / "rerankers"


@dataclass
class Corpus:
    """An index to mine from, the documents in it, and who it belongs to."""

    pipeline: Any                     # RetrievalPipeline
    tenant: Any                       # Tenant
    records: dict[str, Any]           # doc id -> CorpusRecord
    labelled: list[Any]               # LabelledQuery (empty without labels)
    source: dict[str, Any]


def _records(store: Any, tenant: Any) -> dict[str, Any]:
    """Regroup the live index's chunks into documents: title, then sections in chunk order."""
    from fathom.training.rerank.data import CorpusRecord, Section
    from fathom.retrieval.store.contract import IndexRef

    chunks: dict[str, list[Any]] = {}
    for hit in store.scroll(IndexRef(tenant, store.live_version(tenant) or 1)):
        chunks.setdefault(hit.document_id, []).append(hit)
    records = {}
    for doc_id, hits in chunks.items():
        hits.sort(key=lambda h: int(h.payload.get("chunk_index", 0)))
        sections: list[Section] = []
        for h in hits:
            heading = h.payload.get("section") or ""
            if sections and sections[-1].heading == heading:
                sections[-1] = Section(heading, f"{sections[-1].text} {h.text}")
            else:
                sections.append(Section(heading, h.text))
        title = hits[0].payload.get("title") or ""
        records[doc_id] = CorpusRecord(doc_id, str(title), tuple(sections))
    return records


def _miner(pipeline: Any, tenant: Any, depth: int) -> Callable[[str], list[Any]]:
    """The hybrid first stage as served, deduplicated to one chunk per document."""
    from fathom.benchmarks.quality import OPEN_POLICY
    from fathom.retrieval.query_pipeline import RetrievalQuery
    from fathom.training.rerank.data import MinedPassage

    def mine(query: str) -> list[MinedPassage]:
        res = pipeline.retrieve(RetrievalQuery(tenant, query, top_k=depth, mode="hybrid", rerank=False,
                                               unique_documents=True, policy=OPEN_POLICY))
        return [MinedPassage(c.hit.document_id, c.hit.payload.get("section") or "", c.hit.text, c.fused_score)
                for c in res.candidates]

    return mine


def _no_rerank(settings: Settings) -> Settings:
    """Mining needs the first stage only: no mpnet session, and no mpnet vectors in an index built for it
    (they cost ~10x the MiniLM ones to compute and the first stage never reads them)."""
    return settings.model_copy(update={"rerank": settings.rerank.model_copy(update={"kind": "none"}),
                                       "ingest": settings.ingest.model_copy(update={"embed_mpnet": False})})


@contextmanager
def open_corpus(args: argparse.Namespace, settings: Settings, log: Log) -> Iterator[Corpus]:
    from fathom.retrieval.components import build_pipeline
    from fathom.training.rerank.data import LabelledQuery

    if args.dataset:
        from fathom.benchmarks.datasets import load_beir
        from fathom.benchmarks.quality import build_index

        dataset_path = Path(args.dataset)
        index_dir = Path(args.index_dir) if args.index_dir else settings.home / "rerank-index" / dataset_path.name
        # An index of its own: benchmark indexes carry mpnet vectors, and one process at a time may open a folder.
        split = args.split
        if args.mode == "labelled" and split == "test":
            raise SystemExit("fathom: refusing to train on test labels; use --split train (or a golden set)")
        log(f"indexing {dataset_path} into {index_dir} (reused when already there)")
        # build_index reads some qrels split to know the judged queries; mining does not use them.
        any_split = split if (dataset_path / "qrels" / f"{split}.tsv").is_file() else "test"
        index = build_index(dataset_path, _no_rerank(settings), split=any_split, state_dir=index_dir, log=log)
        try:
            labelled = []
            if args.mode == "labelled":
                dataset = load_beir(dataset_path, split)
                labelled = [LabelledQuery(q, dataset.queries[q], rel) for q, rel in sorted(dataset.qrels.items())
                            if q in dataset.queries]
            pipeline = build_pipeline(index.settings, index.store, index.models)
            yield Corpus(pipeline, index.tenant, _records(index.store, index.tenant), labelled,
                         {"dataset": str(dataset_path.resolve()), "split": split if labelled else None,
                          "index_dir": str(index_dir.resolve()), "chunks": index.chunks})
        finally:
            index.close()
        return
    yield from _tenant_corpus(args, settings, log)


def _tenant_corpus(args: argparse.Namespace, settings: Settings, log: Log) -> Iterator[Corpus]:
    """A live tenant's index (the store must not be owned by a running API process with the edge backend)."""
    from fathom.retrieval.components import build_pipeline, load_models, open_store
    from fathom.training.rerank.data import LabelledQuery
    from fathom.retrieval.tenancy import Tenant
    from fathom.service.job_commands import claim_edge_store
    from fathom.ingest.registry import Registry
    from fathom.service.jobs.gate import GoldenSets, read_golden

    tenant = Tenant(args.tenant)
    ownership = claim_edge_store(settings)
    store = open_store(settings)
    try:
        if store.live_version(tenant) is None:
            raise SystemExit(f"fathom: tenant {tenant.id} has no live index")
        labelled = []
        if args.mode == "labelled":
            golden = read_golden(Path(args.golden), settings.jobs.golden_max_queries) if args.golden else None
            if golden is None:
                registry = Registry(settings.registry)
                try:
                    golden = GoldenSets.of(settings, registry).load(tenant)
                finally:
                    registry.close()
            if not golden:
                raise SystemExit(f"fathom: tenant {tenant.id} has no golden set; pass --golden PATH or use --mode pseudo")
            labelled = [LabelledQuery(f"g{i}", g.query, {d: 1 for d in g.expected}) for i, g in enumerate(golden)]
        models = load_models(settings, with_rerank=False)
        pipeline = build_pipeline(_no_rerank(settings), store, models)
        log(f"reading tenant {tenant.id}'s documents")
        yield Corpus(pipeline, tenant, _records(store, tenant), labelled,
                     {"tenant": tenant.id, "golden": args.golden or ("configured" if labelled else None)})
    finally:
        store.close()
        if ownership is not None:
            ownership.release()


def _progress(log: Log, what: str) -> Callable[[int, int], None]:
    last = [time.monotonic()]

    def report(done: int, total: int) -> None:
        if time.monotonic() - last[0] > 10 or done == total:
            last[0] = time.monotonic()
            log(f"  {what} {done}/{total}")

    return report


def mine_data(args: argparse.Namespace, corpus: Corpus, log: Log) -> Any:
    """Mine query lists (labelled or pseudo), split off the validation slice, and describe the data."""
    from collections import Counter

    from fathom.benchmarks.guard_bench import CALIBRATION_FILE, offtopic_queries
    from fathom.retrieval.rerank.cross_encoder import format_passage
    from fathom.training.rerank.data import ListItem, QueryList
    from fathom.training.rerank.mining import MiningConfig, MiningStats, mine_labelled, mine_pseudo, split_by
    from fathom.training.rerank.run import TrainingData

    cfg = MiningConfig(depth=args.depth, dedup_threshold=args.dedup_threshold)
    miner = _miner(corpus.pipeline, corpus.tenant, cfg.depth)
    rng = random.Random(args.seed)
    train_stats, val_stats = MiningStats(), MiningStats()
    if args.mode == "labelled":
        if not corpus.labelled:
            raise SystemExit("fathom: no labelled queries found")
        train_q, val_q = split_by(corpus.labelled, lambda q: q.qid, args.val_fraction, args.seed)
        if args.max_queries and len(train_q) > args.max_queries:
            train_q = rng.sample(train_q, args.max_queries)
        val_q = val_q[: args.max_val_queries]
        kind = "qrels" if args.dataset else "golden"
        log(f"mining hard negatives for {len(train_q)} training and {len(val_q)} validation queries")
        train = mine_labelled(train_q, corpus.records, miner, cfg, kind=kind, stats=train_stats,
                              progress=_progress(log, "mined"))
        val = mine_labelled(val_q, corpus.records, miner, cfg, kind=kind, stats=val_stats)
    else:
        pseudo = corpus_pseudo_queries(args, corpus)
        log(f"{len(pseudo)} pseudo-queries from {len(corpus.records)} documents: "
            f"{dict(Counter(pq.kind for pq in pseudo))}")
        train_q, val_q = split_by(pseudo, lambda pq: pq.doc_id, args.val_fraction, args.seed)
        if args.max_queries and len(train_q) > args.max_queries:
            train_q = rng.sample(train_q, args.max_queries)
        val_q = rng.sample(val_q, min(len(val_q), args.max_val_queries))
        log(f"mining hard negatives for {len(train_q)} training and {len(val_q)} validation pseudo-queries")
        train = mine_pseudo(train_q, miner, cfg, stats=train_stats, progress=_progress(log, "mined"))
        val = mine_pseudo(val_q, miner, cfg, stats=val_stats)
    # Off-topic queries for the confidence calibration: the guard's fitting list, never its evaluation list.
    offtopic = [QueryList(text, [ListItem(m.doc_id, format_passage(m.section, m.text), m.fused_score, 0)
                                 for m in miner(text)], "offtopic") for text in offtopic_queries(CALIBRATION_FILE)]
    source = {**corpus.source, "mode": args.mode, "documents": len(corpus.records),
              "train_queries": len(train), "validation_queries": len(val),
              "train_kinds": dict(Counter(ql.kind for ql in train)), "validation_fraction": args.val_fraction,
              "seed": args.seed}
    mining = {"config": asdict(cfg), "train": train_stats.as_dict(), "validation": val_stats.as_dict()}
    return TrainingData(train, val, offtopic, source, mining, labelled=args.mode == "labelled")


def _train_config(args: argparse.Namespace, settings: Settings) -> Any:
    from fathom.training.rerank.trainer import TrainConfig

    return TrainConfig(layers=args.layers, max_length=args.max_length, epochs=args.epochs, max_steps=args.steps,
                       batch_size=args.batch_size, learning_rate=args.lr, negatives_per_query=args.negatives,
                       time_budget_s=args.time_budget_s, seed=args.seed, threads=settings.models.threads,
                       serve_depth=args.serve_depth)


def _summary(card: Any, out: Path) -> dict[str, Any]:
    return {"reranker": str(out), "layers": card.layers, "max_length": card.max_length,
            "validation": card.validation, "int8_vs_fp32": card.export["int8_vs_fp32_validation"],
            "serving": asdict(card.serving), "training": {k: v for k, v in card.training.items() if k != "loss_curve"}}


def cmd_reranker_train(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.training.rerank.run import train_reranker

    out = reranker_root(settings) / args.out
    command = as_command(args)
    log = _log(args)
    with open_corpus(args, settings, log) as corpus:
        data = mine_data(args, corpus, log)
    card = train_reranker(data, _train_config(args, settings), out, command=command, log=log)
    print(json.dumps(_summary(card, out), indent=2))
    return 0


def corpus_pseudo_queries(args: argparse.Namespace, corpus: Corpus) -> list[Any]:
    """Every pseudo-query (of ``--kinds``) cut from the corpus's documents."""
    from fathom.training.rerank.pseudo import PseudoQueryConfig, pseudo_queries

    cfg = PseudoQueryConfig(kinds=tuple(args.kinds.split(",")))
    return [pq for rec in corpus.records.values() for pq in pseudo_queries(rec, cfg)]


def add_distil_pseudo_queries(args: argparse.Namespace, corpus: Corpus, data: Any, log: Log) -> None:
    """Add ``--pseudo-queries`` unlabelled query lists to a student's training data, mined like the rest.

    A distilled student learns from the teacher's scores, not from labels, so
    any query the first stage answers is a training example; the corpus has
    thousands where the qrels have hundreds. Their pseudo-labels are not used
    (the teacher's scores are the targets), so no judged label leaks in.
    """
    from fathom.training.rerank.mining import MiningConfig, MiningStats, mine_pseudo

    pseudo = corpus_pseudo_queries(args, corpus)
    pseudo = random.Random(args.seed).sample(pseudo, min(len(pseudo), args.pseudo_queries))
    log(f"mining {len(pseudo)} pseudo-queries for the student (the teacher scores them; no labels)")
    stats = MiningStats()
    mining = MiningConfig(depth=args.depth, dedup_threshold=args.dedup_threshold)
    data.train.extend(mine_pseudo(pseudo, _miner(corpus.pipeline, corpus.tenant, mining.depth), mining, stats=stats,
                                  progress=_progress(log, "mined")))
    data.source["distil_pseudo_queries"] = len(pseudo)
    data.mining["distil_pseudo"] = stats.as_dict()


def cmd_reranker_distil(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.training.rerank.distil import distil_reranker

    teacher = reranker_root(settings) / args.teacher
    out = reranker_root(settings) / args.out
    command = as_command(args)
    log = _log(args)
    with open_corpus(args, settings, log) as corpus:
        data = mine_data(args, corpus, log)
        if args.pseudo_queries:
            add_distil_pseudo_queries(args, corpus, data, log)
    card = distil_reranker(data, teacher, _train_config(args, settings), out, command=command, log=log)
    print(json.dumps(_summary(card, out), indent=2))
    return 0


# Options written into the model card's command, every one with its value, so the command still
# reproduces the model after a default changes.
_CARD_OPTIONS = ("teacher", "pseudo_queries", "dataset", "tenant", "mode", "split", "golden", "index_dir", "out",
                 "layers", "max_length", "time_budget_s", "epochs", "steps", "batch_size", "lr", "negatives", "depth", "dedup_threshold",
                 "kinds", "max_queries", "val_fraction", "max_val_queries", "seed", "serve_depth")


def as_command(args: argparse.Namespace) -> str:
    parts = ["fathom", "reranker", args.sub]
    for name in _CARD_OPTIONS:
        value = getattr(args, name, None)
        if value is not None:
            parts += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(parts)


def _log(args: argparse.Namespace) -> Log:
    if args.quiet:
        return lambda _: None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def _common(p: argparse.ArgumentParser, *, layers: int | None, max_length: int) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="BEIR folder: its corpus is indexed (kept in --index-dir) and mined")
    src.add_argument("--tenant", help="a live tenant's corpus (labelled mode: its golden set)")
    p.add_argument("--mode", choices=["labelled", "pseudo"], default="labelled",
                   help="labelled: qrels/golden set; pseudo: pseudo-queries cut from the corpus (no labels)")
    p.add_argument("--split", default="train", help="qrels split for --mode labelled (never 'test')")
    p.add_argument("--golden", help="golden set JSONL for --tenant --mode labelled (default: the tenant's)")
    p.add_argument("--index-dir", help="where the --dataset index is kept (default <home>/rerank-index/<name>)")
    p.add_argument("--out", required=True, help="name of the reranker under <model_dir>/rerankers/")
    p.add_argument("--layers", type=int, default=layers, help="keep the first N encoder layers")
    p.add_argument("--max-length", type=int, default=max_length, help="tokens per query-passage pair")
    p.add_argument("--time-budget-s", type=float, help="stop training after this many seconds")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--steps", type=int, help="training steps (overrides --epochs)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--negatives", type=int, default=4, help="hard negatives per query")
    p.add_argument("--depth", type=int, default=30, help="first-stage documents mined per query")
    p.add_argument("--dedup-threshold", type=float, default=0.5, help="shingle overlap that marks a near-duplicate")
    p.add_argument("--kinds", default="title,lead,section", help="pseudo-query kinds (--mode pseudo)")
    p.add_argument("--max-queries", type=int, help="sample at most this many training queries")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of queries (labelled) or documents "
                                                                    "(pseudo) held out for validation")
    p.add_argument("--max-val-queries", type=int, default=200)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--serve-depth", type=int, default=CROSS_ENCODER_SERVE_DEPTH,
                   help="default rerank depth written to the card (FATHOM_RERANK__DEPTH overrides it when serving)")
    p.add_argument("--quiet", action="store_true")


def add_reranker_commands(sub: Any) -> None:
    """Register ``fathom reranker train|distil`` on the top-level subparsers."""
    rr = sub.add_parser("reranker", help="train cross-encoder rerankers offline").add_subparsers(dest="sub",
                                                                                                 required=True)
    train = rr.add_parser("train", help="fine-tune MiniLM as a cross-encoder, export, verify, write a model card")
    _common(train, layers=None, max_length=256)
    train.set_defaults(fn=cmd_reranker_train)
    distil = rr.add_parser("distil", help="train a smaller student on a trained reranker's scores")
    distil.add_argument("--teacher", required=True, help="name of a trained reranker under <model_dir>/rerankers/")
    distil.add_argument("--pseudo-queries", type=int, default=0, metavar="N",
                        help="also distil on N pseudo-queries cut from the corpus (teacher-scored, no labels)")
    _common(distil, layers=2, max_length=128)
    distil.set_defaults(fn=cmd_reranker_distil)


# --- fathom bench rerank-curve ------------------------------------------------------------
def cmd_bench_rerank_curve(args: argparse.Namespace, settings: Settings) -> int:
    """nDCG@10 and rerank-stage latency for every reranker x depth x max length (plus guard rates per reranker)."""
    from fathom.benchmarks.guard_bench import guard_report
    from fathom.benchmarks.quality import OPEN_POLICY, build_index
    from fathom.benchmarks.rerank_bench import curve_points, format_curve, load_rerankers, run_curve
    from fathom.retrieval.components import build_pipeline
    from fathom.retrieval.guard import GuardPolicy

    log = _log(args)
    dataset = Path(args.dataset) if args.dataset else data_dir() / "scifact"
    rerankers = load_rerankers(settings, args.rerankers.split(","), fp32=args.rerank_fp32)
    points = curve_points(rerankers, [int(d) for d in args.depths.split(",")],
                          [int(n) for n in args.max_lengths.split(",")], args.adaptive)
    index = build_index(dataset, settings, split=args.split, state_dir=Path(args.keep_index) if args.keep_index else None,
                        log=log)
    try:
        rows = run_curve(index, points, max_queries=args.max_queries, log=log)
        guard = {}
        if args.guard:
            policy = GuardPolicy(settings.guard.min_confidence, settings.guard.min_chunk_confidence)
            pipeline = build_pipeline(index.settings, index.store, index.models)
            on_topic = list(index.dataset.judged_queries.values())
            for name, reranker in [("hybrid", None), *rerankers]:
                pipeline.reranker = reranker
                guard[name] = guard_report(pipeline, index.tenant, on_topic, policy, reranker is not None)
                log(f"  guard {name}: {guard[name]}")
    finally:
        index.close()
    print(format_curve(rows))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"rows": rows, "guard": guard, "dataset": str(dataset),
                                               "split": args.split, "open_policy": str(OPEN_POLICY)}, indent=2))
        print(f"wrote {args.json}")
    return 0


def add_rerank_curve_command(bench: Any) -> None:
    rc = bench.add_parser("rerank-curve", help="nDCG@10 and rerank P95 ms over depth x max length x rerankers")
    rc.add_argument("--dataset", help="BEIR folder (default: <data_dir>/scifact)")
    rc.add_argument("--split", default="test")
    rc.add_argument("--rerankers", required=True, metavar="NAME,...", help="trained rerankers (<model_dir>/rerankers/)")
    rc.add_argument("--rerank-fp32", action="store_true", help="also each reranker's fp32 file")
    rc.add_argument("--depths", default="10,20,50")
    rc.add_argument("--max-lengths", default="128,256")
    rc.add_argument("--adaptive", action="store_true", help="also each point with adaptive depth on")
    rc.add_argument("--guard", action="store_true", help="also on/off-topic rejection rates per reranker")
    rc.add_argument("--max-queries", type=int)
    rc.add_argument("--keep-index", metavar="DIR", help="keep the ingested index in DIR and reuse it next time")
    rc.add_argument("--json", help="write the rows here")
    rc.add_argument("--quiet", action="store_true")
    rc.set_defaults(fn=cmd_bench_rerank_curve)


# --- fathom models prepare | export-cross-encoder ------------------------------------------
def cmd_models_prepare(args: argparse.Namespace, settings: Settings) -> int:
    from fathom.training.prepare import prepare_all

    report = prepare_all(settings, force=args.force, include_mpnet=not args.no_mpnet)
    _print_json(report)
    return 0


def cmd_models_export_ce(args: argparse.Namespace, settings: Settings) -> int:
    """Export a local HF-format cross-encoder once; serving then needs only onnxruntime + tokenizers."""
    from fathom.training.prepare import export_cross_encoder

    src = Path(args.hf_dir)
    out = Path(args.out) if args.out else settings.model_dir / "rerankers" / src.name
    _print_json(export_cross_encoder(src, out, quantize=not args.no_int8))
    print(f"serve it with FATHOM_RERANK__KIND=cross-encoder FATHOM_RERANK__CROSS_ENCODER_DIR={out}", file=sys.stderr)
    return 0


def register(cli: Any) -> None:
    """``fathom.cli`` entry point: ``fathom models ...``, ``fathom reranker ...`` and ``fathom bench rerank-curve``."""
    models = cli.group("models", "model provisioning (needs the `export` extra)")
    prep = models.add_parser("prepare", help="export to ONNX, quantise int8 and verify")
    prep.add_argument("--force", action="store_true")
    prep.add_argument("--no-mpnet", action="store_true", help="skip all-mpnet-base-v2 (the mpnet reranker needs it)")
    prep.set_defaults(fn=cmd_models_prepare)
    ece = models.add_parser("export-cross-encoder", help="export a local HF-format cross-encoder folder to ONNX (+ int8)")
    ece.add_argument("hf_dir", help="folder with config.json, weights and tokenizer files")
    ece.add_argument("--out", help="destination (default: <model dir>/rerankers/<folder name>)")
    ece.add_argument("--no-int8", action="store_true")
    ece.set_defaults(fn=cmd_models_export_ce)
    add_reranker_commands(cli.sub)
    add_rerank_curve_command(cli.group("bench", "benchmarks"))
