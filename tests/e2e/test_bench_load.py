"""The load benchmark's machinery end to end, at toy scale: a real ``fathom serve`` process on the sample corpus.

No timing is asserted (this machine is shared); what is checked is that the
runs happen as scheduled and the report has the promised shape: every row
with rps/P50/P95/P99/errors, answers from the real service (cache outcomes,
stage breakdown from its /metrics), the cache-on schedule really producing
exact hits after the generation reset, and the JSON/Markdown/PNG files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from fathom.benchmarks import report
from fathom.benchmarks.load import LoadOptions, baseline_row, measure_http, repeated

QUERIES = ["How do honeybees tell each other where flowers are?", "How is coffee roasted?",
           "What did the Voyager probes carry?", "How does tidal power work?"]
WARM = ["Why does sourdough rise?", "Who invented the printing press?"]
ROW_FIELDS = {"rps", "p50_ms", "p95_ms", "p99_ms", "errors"}


def test_repeated_schedule_sends_each_query_twice() -> None:
    schedule = repeated(QUERIES, 3, seed=13)
    assert sorted(schedule) == sorted(QUERIES[:3] * 2)
    assert schedule == repeated(QUERIES, 3, seed=13)   # the seed fixes the order


def test_load_runs_against_a_real_server_and_reports_the_promised_shape(sample_state, base_settings, tmp_path) -> None:
    state = tmp_path / "state"
    shutil.copytree(sample_state, state)
    opts = LoadOptions(dataset=Path("unused"), modes=("bm25", "hybrid"), caches=("off", "on"), concurrency=(1, 2),
                       requests=6, cache_distinct=3, max_seconds=30, warmup=2)
    results = measure_http(base_settings, opts, state=state, tenant="alpha", texts=QUERIES, warm_texts=WARM,
                           workdir=tmp_path / "logs", log=lambda _: None)
    results["rank-bm25"] = baseline_row([1.0, 2.0, 4.0])
    paths = report.write(results, "toy", tmp_path / "results")
    data = json.loads((tmp_path / "results" / "toy.json").read_text())

    assert {p.suffix for p in paths} == {".json", ".md", ".png"}
    expected = [f"{m}/{c}/c{n}" for m in ("bm25", "hybrid") for c in ("off", "on") for n in (1, 2)]
    expected += ["hybrid/hit/c1", "hybrid/hit/c2", "healthz/c1", "healthz/c2"]
    for key in expected:
        assert ROW_FIELDS <= data[key].keys(), key
        assert data[key]["errors"] == 0, (key, data[key])
    assert set(data["rank-bm25"]) >= ROW_FIELDS
    assert data["hybrid/off/c1"]["requests"] == 6 and data["hybrid/off/c1"]["cache_outcomes"] == {"off": 6}
    assert data["hybrid/off/c1"]["vs_rank_bm25"]["rps"] > 0
    stages = data["hybrid/off/c1"]["server"]["stages"]
    assert stages["total"]["count"] == 6 and {"embed", "search"} <= stages.keys()
    # Three answerable queries sent twice after a generation reset, one request in flight: each first sending
    # misses (nothing leaks from the earlier runs) and each repeat is an exact hit.
    on = data["hybrid/on/c1"]
    assert on["answer_status"] == {"ok": 6}
    assert on["cache_outcomes"] == {"hit-exact": 3, "miss": 3}
    assert data["hybrid/hit/c1"]["cache_outcomes"] == {"hit-exact": 6}
    assert "| hybrid/off/c1 |" in (tmp_path / "results" / "toy.md").read_text()
