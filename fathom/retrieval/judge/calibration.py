"""The judge's fitted parameters: the shipped default model and per-tenant calibrations.

* :class:`JudgeModel` - the default, shipped in the package (``weights/judge.json``):
  a chunk model (``P(chunk is evidence | chunk features)``) and an answer model
  (``P(the head holds evidence | answer features)``), fitted by ``fathom judge
  fit`` on SciFact *train* queries asked twice, once as they are and once with
  their judged evidence filtered out of the search (the on-topic negatives).
* :class:`TenantCalibration` - fitted by ``fathom judge calibrate --tenant T``
  from the tenant's own golden set, the same way: each golden query asked with
  and without its expected documents. It maps the default model's log-odds
  (and the answer features) to this tenant's probabilities, so a corpus whose
  scores sit elsewhere (a homogeneous engineering corpus, say) is judged on its
  own scale. Kept in a :class:`CalibrationStore`: the service's is the
  document registry (``fathom.ingest.tenant_files``), so every process serves
  the same one; elsewhere ``<state>/judge/<tenant>.json``.

Both are written with their provenance (data, counts, fit figures).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from fathom.retrieval.judge.model import LogisticModel
from fathom.retrieval.tenancy import Tenant

FORMAT = 1
DEFAULT_MODEL = Path(__file__).with_name("weights") / "judge.json"
BASE_LOGIT = "base_logit"


@dataclass(frozen=True, slots=True)
class JudgeModel:
    chunk: LogisticModel
    answer: LogisticModel
    depth: int = 10                        # head size the answer features were fitted on
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": "default", "depth": self.depth,
                "chunk": self.chunk.to_json(), "answer": self.answer.to_json(), "provenance": dict(self.provenance)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "JudgeModel":
        _check_format(data, "default")
        return cls(LogisticModel.from_json(data["chunk"]), LogisticModel.from_json(data["answer"]),
                   int(data.get("depth", 10)), data.get("provenance", {}))

    @classmethod
    def null(cls, depth: int = 10) -> "JudgeModel":
        """All-zero coefficients (every probability 1/2): what the judge runs with while the features for the
        first fit are collected (``fathom judge fit``); never served."""
        from fathom.retrieval.judge.features import ANSWER_FEATURES, CHUNK_FEATURES

        def zero(names: tuple[str, ...]) -> LogisticModel:
            return LogisticModel(names, (0.0,) * len(names), (1.0,) * len(names), (0.0,) * len(names), 0.0)

        return cls(zero(CHUNK_FEATURES), zero(ANSWER_FEATURES), depth, {"null": True})

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> "JudgeModel":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass(frozen=True, slots=True)
class TenantCalibration:
    """Per-tenant maps of the default model's log-odds: ``answer`` over (base_logit, answer features), ``chunk``
    over (base_logit,) alone (a Platt rescaling: chunk labels of a golden set are too few for more)."""

    answer: LogisticModel
    chunk: LogisticModel
    provenance: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.answer.features[:1] != (BASE_LOGIT,) or self.chunk.features != (BASE_LOGIT,):
            raise ValueError(f"a tenant calibration maps the default model's {BASE_LOGIT!r} first")

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "kind": "tenant", "answer": self.answer.to_json(), "chunk": self.chunk.to_json(),
                "provenance": dict(self.provenance)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "TenantCalibration":
        _check_format(data, "tenant")
        return cls(LogisticModel.from_json(data["answer"]), LogisticModel.from_json(data["chunk"]),
                   data.get("provenance", {}))


def _check_format(data: Mapping[str, Any], kind: str) -> None:
    if data.get("format") != FORMAT or data.get("kind") != kind:
        raise ValueError(f"not a format-{FORMAT} judge {kind} file (format {data.get('format')}, kind {data.get('kind')})")


class CalibrationStore(Protocol):
    """Where tenant calibrations are kept: JSON text per tenant, with a stamp that changes on every write."""

    def stamp(self, tenant: Tenant) -> str | None: ...                 # cheap: is there one, and which
    def read(self, tenant: Tenant) -> tuple[str, str] | None: ...      # (stamp, JSON text)
    def write(self, tenant: Tenant, text: str) -> None: ...
    def delete(self, tenant: Tenant) -> bool: ...


class CalibrationFiles:
    """``<root>/<tenant>.json`` (one process, or processes sharing a disk); the stamp is the file's mtime."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, tenant: Tenant) -> Path:
        return self.root / f"{tenant.id}.json"

    def stamp(self, tenant: Tenant) -> str | None:
        try:
            return str(self.path(tenant).stat().st_mtime_ns)
        except FileNotFoundError:
            return None

    def read(self, tenant: Tenant) -> tuple[str, str] | None:
        stamp = self.stamp(tenant)
        try:
            return (stamp, self.path(tenant).read_text(encoding="utf-8")) if stamp is not None else None
        except FileNotFoundError:
            return None

    def write(self, tenant: Tenant, text: str) -> None:
        """Write-then-rename, so a concurrent reader sees the old file or the new one."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.path(tenant)
        tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)

    def delete(self, tenant: Tenant) -> bool:
        try:
            self.path(tenant).unlink()
            return True
        except FileNotFoundError:
            return False


class TenantCalibrations:
    """The tenants' calibrations, read from a :class:`CalibrationStore` and parsed once per stamp.

    A store is asked again at most every ``recheck_s`` per tenant (0: on every request, right for files: one
    ``stat``; the service's registry-backed store uses a few seconds, the delay after which every process serves
    a calibration written by another). A calibration that cannot be parsed raises on every request of that tenant
    (the pipeline answers ``degraded`` with ``judge_failed``) instead of silently judging with the default: the
    operator asked for this tenant's calibration.
    """

    def __init__(self, store: CalibrationStore | Path, recheck_s: float = 0.0):
        self.store: CalibrationStore = CalibrationFiles(store) if isinstance(store, Path) else store
        self.recheck_s = recheck_s
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, str | None, TenantCalibration | None]] = {}   # checked, stamp, value

    def get(self, tenant: Tenant) -> TenantCalibration | None:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(tenant.id)
        if cached is not None and self.recheck_s > 0 and now - cached[0] < self.recheck_s:
            return cached[2]
        try:
            stamp = self.store.stamp(tenant)       # a stat, or one small query: the text is read only when it changed
            unchanged = stamp is not None and cached is not None and cached[1] == stamp and cached[2] is not None
            found = None if stamp is None or unchanged else self.store.read(tenant)
        except Exception:
            if cached is None:
                raise                      # nothing read yet: the judge fails explicitly (judge_failed)
            return cached[2]               # the store blinked: keep serving what was read, ask again next time
        if unchanged:
            calibration = cached[2]        # type: ignore[index]
        elif found is None:
            stamp, calibration = None, None
        else:
            stamp, calibration = found[0], TenantCalibration.from_json(json.loads(found[1]))
        with self._lock:
            self._cache[tenant.id] = (now, stamp, calibration)
        return calibration

    def save(self, tenant: Tenant, calibration: TenantCalibration) -> None:
        self.store.write(tenant, json.dumps(calibration.to_json(), indent=1))
        with self._lock:
            self._cache.pop(tenant.id, None)       # this process serves it from its next request

    def delete(self, tenant: Tenant) -> bool:
        deleted = self.store.delete(tenant)
        with self._lock:
            self._cache.pop(tenant.id, None)
        return deleted


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -60.0, 60.0)))
