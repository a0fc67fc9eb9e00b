"""A/B of context assembly latency between two checkouts, on one kept bench index (README "Context assembly").

Runs the committed protocol (``fathom.benchmarks.context_bench._packed``: two folds, served process caches) at
512 and 2,048 cl100k_base tokens, ``--repeats`` times, and prints one JSON line: P95 per repeat (wall clock), the
median P95 and mean of the packing thread's CPU time, naive truncation's P95 in the same process, and a digest of
every context packed (document, span, tokens, highlights, duplicates of each passage): two checkouts with the same
digest packed the same contexts, so a speed-up that changes none shows it. Run it alternately for each checkout,
pinned to one core, with ``PYTHONHASHSEED`` fixed, e.g.::

    for i in 1 2 3; do for tree in ../old .; do
      (cd $tree && PYTHONHASHSEED=0 PYTHONPATH=$PWD taskset -c 0 .venv/bin/python scripts/context_ab.py scifact --label $tree \\
         --index /path/to/.fathom/bench-idx/scifact); done; done

(the older checkout needs this file copied in, or run this one with ``PYTHONPATH`` pointing at the older tree).
Build the index first with ``fathom bench context --keep-index DIR`` (it carries the tokenizer's counts).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from pathlib import Path

from fathom.benchmarks import context_bench as cb
from fathom.benchmarks.config import data_dir
from fathom.retrieval.ir_metrics import percentile
from fathom.config import get_settings
from fathom.retrieval.context import ContextOptions, load_tokenizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dataset")
    ap.add_argument("--index", required=True, type=Path, help="a kept bench index (DIR/<dataset>)")
    ap.add_argument("--label", default="")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    settings = cb.counting_with(get_settings(), "cl100k_base")
    ds = cb._Dataset(data_dir() / args.dataset, settings, "test", 20, None, args.index, lambda *a: None)
    tok = load_tokenizer("cl100k_base")
    out: dict[str, object] = {"dataset": args.dataset, "label": args.label}
    try:
        packed: dict[str, object] = {}
        for budget in (512, 2048):
            runs, cpu_p95, cpu_mean = [], [], []
            for _ in range(args.repeats):
                timed = cb._packed(ds, tok, ContextOptions(max_tokens=budget), cached=True)
                runs.append(round(percentile([ms for _, ms, _ in timed.values()], 95), 2))
                cpu = [c for _, _, c in timed.values()]
                cpu_p95.append(percentile(cpu, 95))
                cpu_mean.append(statistics.mean(cpu))
            packed[str(budget)] = {q: [[p.document_id, p.char_start, p.char_end, p.tokens,
                                        [h.start for h in p.highlights], len(p.duplicates)] for p in res.passages]
                                   for q, (res, _, _) in sorted(timed.items())}
            naive = [cb.naive(ds.chunks[q], budget, tok).ms for q in ds.queries]
            out[str(budget)] = {"p95_runs": runs, "cpu_p95_median": round(statistics.median(cpu_p95), 3),
                                "cpu_mean_median": round(statistics.median(cpu_mean), 3),
                                "naive_p95": round(percentile(naive, 95), 2)}
        out["contexts_digest"] = hashlib.sha256(json.dumps(packed, sort_keys=True).encode()).hexdigest()[:16]
    finally:
        ds.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
