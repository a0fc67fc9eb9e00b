"""Benchmark results as files: the JSON, a Markdown report and a PNG plot, under ``benchmarks/results/``.

The JSON keeps the shape the issue asked for, with more fields inside each row::

    {"<mode>/<cache>/c<concurrency>": {"rps", "p50_ms", "p95_ms", "p99_ms", "errors", ...},
     "rank-bm25": {...}, "scale": {"<chunks>": {"p95_ms", "ingest_chunks_per_s", "rss_mb", ...}}, ...}

Keys starting with ``_`` are metadata. Every load row gets ``vs_rank_bm25``
(its throughput and P95 over the baseline's), so each figure has its ratio.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fathom.service.observability.metrics import STAGES

# Results go to the checkout's benchmarks/results/ (gitignored), beside the code, not inside the package.
RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def is_load_row(key: str) -> bool:
    return key.count("/") == 2 and key.rsplit("/", 1)[1].startswith("c") and not key.startswith("healthz")


def add_ratios(results: dict[str, Any]) -> None:
    """``vs_rank_bm25``: rps and P95 of each HTTP row divided by the in-process rank-bm25 baseline's."""
    base = results.get("rank-bm25")
    if not base:
        return
    for key, row in results.items():
        if is_load_row(key) and isinstance(row, dict):
            row["vs_rank_bm25"] = {"rps": round(row["rps"] / base["rps"], 3) if base["rps"] else None,
                                   "p95": round(row["p95_ms"] / base["p95_ms"], 3) if base["p95_ms"] else None}


def _f(x: Any, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def load_table(results: Mapping[str, Any]) -> list[str]:
    lines = ["| configuration | rps | x rank-bm25 | P50 ms | P95 ms | P99 ms | max ms | x rank-bm25 P95 | errors | "
             "cache outcomes | CPU ms/req server + client | load 1m |", "|---" * 12 + "|"]
    keys = [k for k in results if is_load_row(k) or k.startswith("healthz/")]
    for key in keys:
        r = results[key]
        ratio = r.get("vs_rank_bm25", {})
        cache = ", ".join(f"{k} {v}" for k, v in r.get("cache_outcomes", {}).items())
        cpu = r.get("cpu_ms_per_request", {})
        lines.append(f"| {key} | {_f(r['rps'])} | {_f(ratio.get('rps'), 2)} | {_f(r['p50_ms'])} | {_f(r['p95_ms'])} | "
                     f"{_f(r['p99_ms'])} | {_f(r['max_ms'])} | {_f(ratio.get('p95'), 2)} | {r['errors']} | {cache} | "
                     f"{_f(cpu.get('server'))} + {_f(cpu.get('client'))} | {_f(r.get('load_avg_1m'), 2)} |")
    base = results.get("rank-bm25")
    if base:
        lines.append(f"| rank-bm25 (in-process, sequential) | {_f(base['rps'])} | 1.00 | {_f(base['p50_ms'])} | "
                     f"{_f(base['p95_ms'])} | {_f(base['p99_ms'])} | {_f(base['max_ms'])} | 1.00 | 0 | | | |")
    return lines


def stage_table(results: Mapping[str, Any]) -> list[str]:
    """Server-side mean ms per request and stage (from /metrics), next to the client's mean."""
    stages = list(STAGES)
    lines = ["| configuration | client mean | server route mean | " + " | ".join(stages) + " |",
             "|---|---|---|" + "---|" * len(stages)]
    for key, r in results.items():
        if not is_load_row(key) or "server" not in r:
            continue
        st = r["server"]["stages"]
        cells = [_f(st[s]["per_request_ms"], 2) if s in st else "-" for s in stages]
        lines.append(f"| {key} | {_f(r.get('mean_ms'), 2)} | {_f(r['server'].get('route_mean_ms'), 2)} | "
                     + " | ".join(cells) + " |")
    return lines


def curve_table(rows: list[dict[str, Any]]) -> list[str]:
    from fathom.benchmarks.rerank_bench import format_curve

    return format_curve(rows).splitlines()


def growth(points: Mapping[str, Any], key: str = "p95_ms") -> list[str]:
    """Cost growth between consecutive sizes: the factor, and the exponent a in cost ~ size^a."""
    sizes = sorted(points, key=int)
    lines = []
    for a, b in zip(sizes, sizes[1:]):
        ya, yb = points[a][key], points[b][key]
        if ya and yb:
            alpha = math.log(yb / ya) / math.log(int(b) / int(a))
            lines.append(f"- {int(a):,} -> {int(b):,} chunks: {key} x{yb / ya:.2f} (~ size^{alpha:.2f})")
    return lines


def scale_table(results: Mapping[str, Any]) -> list[str]:
    scale, tenants = results.get("scale") or {}, results.get("scale_tenants") or {}
    if not scale and not tenants:
        return []
    lines = ["| chunks | tenants | P95 ms | P50 ms | store P95 ms (hybrid / dense / bm25) | qps | qps threads | "
             "x rank-bm25 qps | ingest chunks/s | optimize s | disk MB | RSS MB | dense recall@100 (ef) | load 1m |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = [(k, 1, v) for k, v in sorted(scale.items(), key=lambda kv: int(kv[0]))]
    rows += [(k.split("/")[0], int(k.split("/")[1]), v) for k, v in tenants.items()]
    for chunks, n_tenants, r in rows:
        threads = next((v for k, v in r.items() if k.startswith("qps_threads")), None)
        recall = ", ".join(f"{ef}: {x['recall']:.3f}" for ef, x in r["dense_recall"]["ef"].items())
        store = " / ".join(_f(r[f"search_{m}"]["p95_ms"], 2) for m in ("hybrid", "dense", "bm25"))
        lines.append(f"| {int(chunks):,} | {n_tenants} | {_f(r['p95_ms'])} | {_f(r['p50_ms'])} | {store} | "
                     f"{_f(r['qps'])} | {_f(threads)} | {_f(r.get('hybrid_vs_rank_bm25_qps'), 2)} | "
                     f"{_f(r['ingest_chunks_per_s'])} | {_f(r['build']['optimize_s'])} | {_f(r['build']['disk_mb'])} | "
                     f"{_f(r['rss_mb'])} | {recall} | {_f(r.get('load_avg_1m'), 2)} |")
    if scale:
        lines += ["", "Growth with corpus size (single tenant):", *growth(scale), *growth(
            {k: {"p95_ms": v["search_hybrid"]["p95_ms"]} for k, v in scale.items()})]
    return lines


def hnsw_table(results: Mapping[str, Any]) -> list[str]:
    rows = results.get("hnsw") or {}
    if not rows:
        return []
    lines = ["| corpus | m | ef_construct | optimize s | disk MB | ef | recall@100 | min recall | ANN P95 ms | "
             "exact P95 ms |", "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in rows.items():
        for ef, x in r["recall"]["ef"].items():
            lines.append(f"| {key.split('/')[0]} ({r['chunks']:,}) | {r['m']} | {r['ef_construct']} | "
                         f"{_f(r['optimize_s'])} | {_f(r['disk_mb'])} | {ef} | {x['recall']:.4f} | "
                         f"{x['recall_min']:.3f} | {_f(x['p95_ms'], 2)} | {_f(r['recall']['exact']['p95_ms'], 2)} |")
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    parts = ["# Fathom performance report", ""]
    meta = {k: v for k, v in results.items() if k.startswith("_")}
    if any(is_load_row(k) for k in results):
        parts += ["## /v1/retrieve over HTTP (client-side latency)", "", *load_table(results), "",
                  "## Per-stage cost (server-side mean ms per request, from /metrics)", "", *stage_table(results), ""]
    if results.get("rerank_curve"):
        parts += ["## Rerank depth: quality vs latency (in-process)", "", *curve_table(results["rerank_curve"]), ""]
    if results.get("scale") or results.get("scale_tenants"):
        parts += ["## Scale (embedded engine, synthetic corpus from SciFact + CACM)", "", *scale_table(results), ""]
    if results.get("hnsw"):
        parts += ["## HNSW: dense-leg recall vs exact search", "", *hnsw_table(results), ""]
    parts += ["## Run metadata", "", "```json", json.dumps(meta, indent=2, default=str), "```", ""]
    return "\n".join(parts)


def plot(results: Mapping[str, Any], path: Path) -> bool:
    """Latency percentiles vs concurrency per mode (cache off), and P95 vs corpus size; False if nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = {k: v for k, v in results.items() if is_load_row(k) and k.split("/")[1] == "off"}
    scale = results.get("scale") or {}
    panels = [p for p, present in (("load", rows), ("scale", scale)) if present]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel == "load":
            modes = sorted({k.split("/")[0] for k in rows})
            for i, mode in enumerate(modes):
                pts = sorted(((int(k.rsplit("/c", 1)[1]), v) for k, v in rows.items() if k.split("/")[0] == mode))
                xs = [c for c, _ in pts]
                color = f"C{i}"
                ax.plot(xs, [v["p95_ms"] for _, v in pts], "-o", color=color, label=f"{mode} P95")
                ax.plot(xs, [v["p50_ms"] for _, v in pts], "--", color=color, alpha=0.6, label=f"{mode} P50")
                ax.plot(xs, [v["p99_ms"] for _, v in pts], ":", color=color, alpha=0.6, label=f"{mode} P99")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel("latency ms (client-side)")
            ax.set_title("/v1/retrieve, cache off")
            ax.legend(fontsize=7, ncol=2)
        else:
            sizes = sorted(scale, key=int)
            xs = [int(s) for s in sizes]
            ax.plot(xs, [scale[s]["p95_ms"] for s in sizes], "-o", label="pipeline hybrid P95 (embed incl.)")
            ax.plot(xs, [scale[s]["search_hybrid"]["p95_ms"] for s in sizes], "-s", label="store hybrid P95")
            ax.set_xscale("log")
            ax.set_xlabel("chunks in the tenant")
            ax.set_ylabel("P95 ms")
            ax.set_title("P95 vs corpus size (embedded engine)")
            ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(results: dict[str, Any], name: str, out_dir: Path = RESULTS_DIR, json_path: Path | None = None) -> list[Path]:
    """``<name>.json``, ``<name>.md`` and ``<name>.png`` in ``out_dir`` (and the JSON at ``json_path`` too)."""
    add_ratios(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, default=str)
    written = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    written[0].write_text(text)
    written[1].write_text(markdown(results))
    if plot(results, out_dir / f"{name}.png"):
        written.append(out_dir / f"{name}.png")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(text)
        written.append(json_path)
    return written
