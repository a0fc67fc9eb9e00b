"""``fathom bench injection``: recall and false positives of the prompt-injection flags.

* the labelled set (fathom/benchmarks/injection_cases.py, written for it): recall over the attacks (flagged at
  all, and flagged with the expected family) per obfuscation, attacks placed in a metadata field
  (``scan_fields``), and false positives over the benign texts; and recall over ``HELD_OUT``, attacks written
  after the patterns and not tuned on (the sets before were written beside them, so their recall flatters);
* every SciFact abstract and every CACM record (``<data_dir>/scifact``, ``<data_dir>/cacm``), scanned as a
  chunk is (title and text, through ``scan_fields``): the false-positive rate on real prose, and the mean scan
  time per record.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from fathom.benchmarks.datasets import load_beir
from fathom.benchmarks.injection_cases import ATTACKS, BENIGN, FIELD_ATTACKS, HELD_OUT
from fathom.retrieval.injection import scan, scan_fields

CORPORA = ("scifact", "cacm")


def labelled() -> dict[str, Any]:
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])   # kind -> [cases, flagged, right family]
    missed = []
    for text, family, kind in ATTACKS:
        result = scan(text)
        row = by_kind[kind]
        row[0] += 1
        row[1] += result.flagged
        row[2] += family in result.families
        if family not in result.families:
            missed.append({"text": text, "family": family, "kind": kind, "found": list(result.families)})
    fields = [(f, fam, scan_fields("A plain sentence about espresso grinders.", {f: {"k": v} if f == "tags" else v}))
              for f, v, fam in FIELD_ATTACKS]
    false_pos = [{"text": b, "found": list(scan(b).families)} for b in BENIGN if scan(b).flagged]
    flagged = sum(r[1] for r in by_kind.values())
    right = sum(r[2] for r in by_kind.values())
    return {"attacks": len(ATTACKS), "recall": round(flagged / len(ATTACKS), 4),
            "recall_with_family": round(right / len(ATTACKS), 4),
            "by_obfuscation": {k: {"cases": r[0], "flagged": r[1], "family": r[2]} for k, r in sorted(by_kind.items())},
            "missed": missed,
            "field_attacks": len(FIELD_ATTACKS),
            "field_recall": round(sum(fam in r.families and r.fields != ("text",) for _, fam, r in fields)
                                  / len(FIELD_ATTACKS), 4),
            "held_out": len(HELD_OUT),
            "held_out_recall": round(sum(scan(t).flagged for t, _, _ in HELD_OUT) / len(HELD_OUT), 4),
            "held_out_recall_with_family": round(sum(f in scan(t).families for t, f, _ in HELD_OUT) / len(HELD_OUT), 4),
            "held_out_missed": [{"text": t, "family": f, "kind": k} for t, f, k in HELD_OUT if f not in scan(t).families],
            "benign": len(BENIGN), "benign_false_positives": len(false_pos),
            "benign_false_positive_rate": round(len(false_pos) / len(BENIGN), 4), "false_positive_texts": false_pos}


def corpus(path: Path) -> dict[str, Any]:
    docs = list(load_beir(path).corpus())
    flagged, t0 = [], time.perf_counter()
    for d in docs:
        result = scan_fields(d.text, {"title": d.title} if d.title else {})
        if result.flagged:
            flagged.append({"id": d.id, "families": list(result.families), "fields": list(result.fields)})
    seconds = time.perf_counter() - t0
    return {"records": len(docs), "flagged": len(flagged), "false_positive_rate": round(len(flagged) / len(docs), 6),
            "mean_scan_us": round(seconds / len(docs) * 1e6, 1), "flagged_records": flagged[:50]}


def run_injection_bench(data_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"labelled": labelled(), "corpora": {}}
    for name in CORPORA:
        if (data_dir / name).exists():
            out["corpora"][name] = corpus(data_dir / name)
    return out


def format_injection(result: dict[str, Any]) -> str:
    lab = result["labelled"]
    lines = [f"labelled attacks: {lab['attacks']}, recall {lab['recall']:.1%} (with the expected family "
             f"{lab['recall_with_family']:.1%}); in a metadata field: {lab['field_attacks']}, recall "
             f"{lab['field_recall']:.1%}; benign: {lab['benign']}, false positives {lab['benign_false_positives']}",
             f"held-out attacks (written after the patterns, not tuned on): {lab['held_out']}, recall "
             f"{lab['held_out_recall']:.1%} (with the expected family {lab['held_out_recall_with_family']:.1%})",
             f"{'obfuscation':<26} {'cases':>5} {'flagged':>8} {'family':>7}"]
    lines += [f"{k:<26} {r['cases']:>5} {r['flagged']:>8} {r['family']:>7}" for k, r in lab["by_obfuscation"].items()]
    for name, c in result["corpora"].items():
        lines.append(f"{name}: {c['flagged']} of {c['records']} records flagged ({c['false_positive_rate']:.3%}), "
                     f"{c['mean_scan_us']:.0f} us per record")
    return "\n".join(lines)
