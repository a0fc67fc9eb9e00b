"""Settings: one place per default, each layer's groups beside it, every ``FATHOM_*`` variable still read.

The core groups live in ``fathom/config.py`` (imports nothing else of Fathom), the service's in
``fathom/service/core/config.py`` (composed onto the core root), the benchmarks' data directory in
``fathom/benchmarks/config.py``. The variables documented in README.md and set by the Helm chart and
scripts are the contract: each must name a field of one of those roots.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from fathom import config as core
from fathom.benchmarks.config import BenchmarkSettings
from fathom.service.core.config import Settings
from tests.support import REPO

# Knobs of the test suite itself, not of Fathom.
TEST_ONLY = {"FATHOM_SOAK_SECONDS"}


def env_names(model: type[BaseModel], prefix: str = "FATHOM_") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= env_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def documented() -> set[str]:
    text = (REPO / "README.md").read_text()
    for path in [*(REPO / "helm").rglob("*.yaml"), *(REPO / "scripts").glob("*.sh")]:
        text += path.read_text()
    return {n for n in re.findall(r"FATHOM_[A-Z0-9_]+", text) if not n.endswith("_")} - TEST_ONLY


def test_every_documented_variable_names_a_setting() -> None:
    known = env_names(Settings) | env_names(BenchmarkSettings)
    names = documented()
    assert len(names) > 30, "the README/chart scan found too little to check"
    assert names - known == set()


def test_each_group_lives_in_one_root_only() -> None:
    core_groups, service_groups = set(core.Settings.model_fields), set(Settings.model_fields) - set(core.Settings.model_fields)
    assert {"service", "cache", "limits", "redis", "observability", "jobs", "redis_url"} == service_groups
    assert not {"data_dir"} & (core_groups | service_groups)
    assert set(BenchmarkSettings.model_fields) == {"data_dir"}


@pytest.mark.parametrize("var, value, read", [
    ("FATHOM_SERVICE__PORT", "9123", lambda s, b: s.service.port == 9123),
    ("FATHOM_CACHE__TTL_S", "77", lambda s, b: s.cache.ttl_s == 77),
    ("FATHOM_LIMITS__KEY_RATE", "3.5", lambda s, b: s.limits.key_rate == 3.5),
    ("FATHOM_REDIS__TIMEOUT_MS", "99", lambda s, b: s.redis.timeout_ms == 99.0),
    ("FATHOM_OBSERVABILITY__SERVICE_NAME", "x-svc", lambda s, b: s.observability.service_name == "x-svc"),
    ("FATHOM_JOBS__HEARTBEAT_S", "0.5", lambda s, b: s.jobs.heartbeat_s == 0.5),
    ("FATHOM_REDIS_URL", "redis://h:1/0", lambda s, b: s.redis_url == "redis://h:1/0"),
    ("FATHOM_STORE__HNSW_EF", "64", lambda s, b: s.store.hnsw_ef == 64),
    ("FATHOM_RERANK__DEPTH", "12", lambda s, b: s.rerank.depth == 12),
    ("FATHOM_HOME", "/tmp/fathom-home", lambda s, b: s.home == Path("/tmp/fathom-home")),
    ("FATHOM_DATA_DIR", "/tmp/fathom-data", lambda s, b: b.data_dir == Path("/tmp/fathom-data")),
])
def test_variables_are_read_into_their_group(monkeypatch: pytest.MonkeyPatch, var: str, value: str, read: Any) -> None:
    monkeypatch.setenv(var, value)
    assert read(Settings(), BenchmarkSettings())
    if not var.startswith(("FATHOM_SERVICE", "FATHOM_CACHE", "FATHOM_LIMITS", "FATHOM_REDIS", "FATHOM_OBSERVABILITY",
                           "FATHOM_JOBS", "FATHOM_DATA_DIR")):
        core_settings = core.Settings()   # a core variable reaches retrieval/ingest without the service
        assert read(core_settings, None)


def test_the_served_rerank_sizes_have_one_resolution() -> None:
    k = core.RerankSettings()
    assert k.sizes() == (core.DEFAULT_RERANK_DEPTH, core.DEFAULT_RERANK_MAX_LENGTH)
    assert k.sizes(7, 96) == (7, 96)                                   # a trained model's card
    assert core.RerankSettings(depth=30).sizes(7, 96) == (30, 96)      # the settings win
