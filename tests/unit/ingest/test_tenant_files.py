"""Golden sets and judge calibrations kept in the registry: what one process (pod) writes, every other one reads.

On Kubernetes each pod's state dir is its own ``emptyDir``: before, an admin's uploaded golden set lived in the
API pod that took the upload (a worker's reindex gate never saw it, and swapped ungated), and a tenant
calibration lived in the pod that fitted it. Two ``Registry`` objects on one database stand for two pods; each has
its own state dir. Run on SQLite and, where it is reachable, on the real PostgreSQL the chart uses.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from fathom.ingest.registry import Registry
from fathom.ingest.tenant_files import registry_calibrations
from fathom.retrieval.judge.calibration import TenantCalibration
from fathom.retrieval.judge.features import ANSWER_FEATURES
from fathom.retrieval.judge.model import LogisticModel
from fathom.retrieval.tenancy import Tenant
from fathom.service.core.config import get_settings
from fathom.service.jobs.gate import GoldenQuery, GoldenSets

ACME, OTHER = Tenant("acme"), Tenant("other")


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_registry_url")


def _pod(tmp_path: Path, name: str, url: str) -> tuple[Registry, GoldenSets]:
    settings = get_settings().model_copy(update={"state_dir": tmp_path / name, "registry_url": url})
    registry = Registry(url)
    return registry, GoldenSets.of(settings, registry)


def _calibration(intercept: float) -> TenantCalibration:
    answer = LogisticModel(("base_logit", *ANSWER_FEATURES), (0.0,) * 10, (1.0,) * 10, (1.0,) + (0.0,) * 9, intercept)
    return TenantCalibration(answer, LogisticModel(("base_logit",), (0.0,), (1.0,), (1.0,), 0.0), {"fit": intercept})


def test_a_golden_set_uploaded_in_one_process_gates_a_reindex_in_another(tmp_path: Path, registry_url: str) -> None:
    api, api_sets = _pod(tmp_path, "api", registry_url)
    worker, worker_sets = _pod(tmp_path, "worker", registry_url)
    try:
        assert worker_sets.load(ACME) is None and worker_sets.find(ACME) is None
        queries = [GoldenQuery("time sharing systems", ("cacm-1", "cacm-2")), GoldenQuery("parsing", ("cacm-9",))]
        api_sets.save(ACME, queries)
        assert worker_sets.load(ACME) == queries and worker_sets.find(ACME) == ("uploaded", queries)
        assert worker_sets.load(OTHER) is None                         # tenant-scoped
        api_sets.save(ACME, queries[:1])                               # replaced whole
        assert worker_sets.load(ACME) == queries[:1]
        assert not api_sets.legacy_root.exists()                      # nothing on the pod's own disk
    finally:
        api.close()
        worker.close()


def test_a_golden_set_uploaded_before_the_registry_kept_them_is_still_read(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    registry, sets = _pod(tmp_path, "pod", url)
    try:
        legacy = sets.legacy_root / "acme.jsonl"
        legacy.parent.mkdir(parents=True)
        legacy.write_text(json.dumps({"query": "q", "expected": ["d"]}) + "\n")
        assert sets.find(ACME) == ("uploaded", [GoldenQuery("q", ("d",))])
        sets.save(ACME, [GoldenQuery("new", ("e",))])                  # the registry's wins from then on
        assert sets.load(ACME) == [GoldenQuery("new", ("e",))]
    finally:
        registry.close()


def test_a_calibration_fitted_in_one_process_is_served_by_another(tmp_path: Path, registry_url: str) -> None:
    worker, api = Registry(registry_url), Registry(registry_url)
    try:
        written, served = registry_calibrations(worker), registry_calibrations(api)
        served.recheck_s = 0.0                 # the service re-asks every CALIBRATION_RECHECK_S; here at once
        assert served.get(ACME) is None
        written.save(ACME, _calibration(1.0))
        assert served.get(ACME).provenance == {"fit": 1.0} and served.get(OTHER) is None
        written.save(ACME, _calibration(2.0))
        assert served.get(ACME).provenance == {"fit": 2.0}
        assert written.delete(ACME) and served.get(ACME) is None and not written.delete(ACME)
    finally:
        worker.close()
        api.close()


def test_a_process_serves_what_it_read_until_its_recheck_interval_ends(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    worker, api = Registry(url), Registry(url)
    try:
        written, served = registry_calibrations(worker), registry_calibrations(api)
        served.recheck_s = 3600.0
        written.save(ACME, _calibration(1.0))
        assert served.get(ACME).provenance == {"fit": 1.0}
        written.save(ACME, _calibration(2.0))
        assert served.get(ACME).provenance == {"fit": 1.0}             # within the interval: the one it read
        served.save(ACME, _calibration(3.0))                           # its own write: served at once
        assert served.get(ACME).provenance == {"fit": 3.0}
    finally:
        worker.close()
        api.close()


def test_concurrent_writers_leave_one_whole_file(registry_url: str) -> None:
    registry = Registry(registry_url)
    try:
        bodies = [json.dumps({"writer": i, "pad": "x" * 5000}) for i in range(8)]
        threads = [threading.Thread(target=registry.write_file, args=(ACME, "judge_calibration", b)) for b in bodies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stamp, body = registry.read_file(ACME, "judge_calibration")
        assert body in bodies and stamp.endswith(":" + hashlib.sha256(body.encode()).hexdigest()[:16])
    finally:
        registry.close()


def test_a_calibration_file_from_before_the_registry_is_served_until_replaced(tmp_path: Path) -> None:
    from fathom.retrieval.judge.calibration import TenantCalibrations

    legacy = tmp_path / "state" / "judge"
    TenantCalibrations(legacy).save(ACME, _calibration(1.0))          # how calibrations were kept before
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        calibrations = registry_calibrations(registry, legacy)
        assert calibrations.get(ACME).provenance == {"fit": 1.0}
        calibrations.save(ACME, _calibration(2.0))
        assert registry_calibrations(registry, legacy).get(ACME).provenance == {"fit": 2.0}
        assert calibrations.delete(ACME) and registry_calibrations(registry, legacy).get(ACME) is None
    finally:
        registry.close()


def test_a_registry_that_fails_keeps_the_calibration_last_read_and_a_first_read_fails_loudly(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        calibrations = registry_calibrations(registry)
        calibrations.recheck_s = 0.0
        calibrations.save(ACME, _calibration(1.0))
        assert calibrations.get(ACME).provenance == {"fit": 1.0}

        def down(*_: object) -> None:
            raise ConnectionError("registry down")                     # the fault injected

        calibrations.store.registry.read_file = down                    # type: ignore[method-assign]
        calibrations.store.registry.file_stamp = down                   # type: ignore[method-assign]
        assert calibrations.get(ACME).provenance == {"fit": 1.0}
        with pytest.raises(ConnectionError):
            calibrations.get(OTHER)                                     # never read: no silent default
    finally:
        registry.close()
