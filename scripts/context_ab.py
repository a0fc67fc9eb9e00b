"""A/B of context assembly latency between two checkouts, on one kept bench index (README "Context assembly").

Runs the committed protocol (``fathom.benchmarks.context_bench._packed``: two folds, served process caches) at
512 and 2,048 cl100k_base tokens, ``--repeats`` times, and prints one JSON line: P95 per repeat and naive
truncation's P95 in the same process. Run it alternately for each checkout, pinned to one core, e.g.::

    for i in 1 2 3; do for tree in ../old .; do
      (cd $tree && PYTHONPATH=$PWD taskset -c 0 .venv/bin/python scripts/context_ab.py scifact --label $tree \\
         --index /path/to/.fathom/bench-idx/scifact); done; done

(the older checkout needs this file copied in, or run this one with ``PYTHONPATH`` pointing at the older tree).
Build the index first with ``fathom bench context --keep-index DIR`` (it carries the tokenizer's counts).
"""

from __future__ import annotations

import argparse
import json
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
        for budget in (512, 2048):
            runs = []
            for _ in range(args.repeats):
                timed = cb._packed(ds, tok, ContextOptions(max_tokens=budget), cached=True)
                runs.append(round(percentile([ms for _, ms, _ in timed.values()], 95), 2))
            naive = [cb.naive(ds.chunks[q], budget, tok).ms for q in ds.queries]
            out[str(budget)] = {"p95_runs": runs, "naive_p95": round(percentile(naive, 95), 2)}
    finally:
        ds.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
