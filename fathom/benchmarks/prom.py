"""The service's own per-stage costs, from two scrapes of ``GET /metrics`` around a run.

Histograms are cumulative, so the difference of ``_sum`` and ``_count``
between the scrape after a run and the one before it is exactly that run's
requests: the mean time per stage. Means are what Prometheus histograms can
give exactly; quantiles would be interpolated inside coarse buckets
(25 ms, 50 ms, 100 ms ...), which is too coarse to compare stages of a few ms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Scrape:
    """Every sample of one scrape, by (sample name, sorted labels)."""

    values: Mapping[Key, float]

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """``{label value: sample value}`` for one sample name, summed over the other labels."""
        out: dict[str, float] = {}
        for (sample, labels), value in self.values.items():
            if sample == name:
                key = dict(labels).get(label)
                if key is not None:
                    out[key] = out.get(key, 0.0) + value
        return out


def scrape(client: httpx.Client) -> Scrape:
    response = client.get("/metrics")
    response.raise_for_status()
    values: dict[Key, float] = {}
    for family in text_string_to_metric_families(response.text):
        for s in family.samples:
            values[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return Scrape(values)


def stage_breakdown(before: Scrape, after: Scrape) -> dict[str, dict[str, Any]]:
    """Per stage: how many requests ran it, its mean time when run, and its time spread over every request.

    ``per_request_ms`` divides by the number of ``total`` observations (one per
    retrieve request), so the stages of a run add up to about its total.
    """
    sums = {k: v - before.labelled("fathom_stage_seconds_sum", "stage").get(k, 0.0)
            for k, v in after.labelled("fathom_stage_seconds_sum", "stage").items()}
    counts = {k: v - before.labelled("fathom_stage_seconds_count", "stage").get(k, 0.0)
              for k, v in after.labelled("fathom_stage_seconds_count", "stage").items()}
    requests = counts.get("total", 0.0)
    out = {}
    for stage, count in counts.items():
        if count <= 0:
            continue
        out[stage] = {"count": int(count), "mean_ms": round(sums[stage] / count * 1000.0, 3),
                      "per_request_ms": round(sums[stage] / requests * 1000.0, 3) if requests else None}
    return out


def route_mean_ms(before: Scrape, after: Scrape, route: str) -> float | None:
    """Mean server-side latency of a route (all statuses): the request middleware's clock, arrival to last byte."""
    def total(s: Scrape, name: str) -> float:
        return sum(v for (n, labels), v in s.values.items() if n == name and ("route", route) in labels)

    count = total(after, "fathom_request_seconds_count") - total(before, "fathom_request_seconds_count")
    seconds = total(after, "fathom_request_seconds_sum") - total(before, "fathom_request_seconds_sum")
    return round(seconds / count * 1000.0, 3) if count > 0 else None
