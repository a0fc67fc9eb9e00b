"""Job records and the errors a job ends with.

A record is what ``GET /v1/admin/jobs/{id}`` shows and what survives the
process that ran the job (in Redis): status, phase and progress, counts,
per-document errors, the terminal error with its figures, and the heartbeat
that tells a dead worker from a slow one.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
MAX_DOCUMENT_ERRORS = 100   # per-document errors kept in a record; the counts say how many there were in all


class JobsUnavailable(RuntimeError):
    """The job backend (Redis) cannot be reached; the API answers 503 ``jobs_unavailable``."""


class JobFailed(Exception):
    """A job ends as failed with a stable code, a message and the figures that explain it."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.message, self.details = code, message, details or {}


class JobCancelled(Exception):
    """An admin asked the job to stop; it ends as cancelled after cleaning up."""


@dataclass(slots=True)
class JobRecord:
    id: str
    kind: str
    tenant: str
    status: JobStatus
    options: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    worker: str | None = None
    phase: str | None = None
    progress: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    target_version: int | None = None
    cancel_requested: bool = False

    @classmethod
    def new(cls, kind: str, tenant: str, options: dict[str, Any]) -> "JobRecord":
        return cls(id=uuid.uuid4().hex, kind=kind, tenant=tenant, status=JobStatus.QUEUED, options=options,
                   created_at=time.time())

    def to_fields(self) -> dict[str, str]:
        """Every field JSON-encoded, so a partial update (one Redis HSET) encodes the same way."""
        return encode_fields(asdict(self))

    @classmethod
    def from_fields(cls, raw: dict[str, str]) -> "JobRecord":
        data = {k: json.loads(v) for k, v in raw.items() if k in cls.__dataclass_fields__}
        data["status"] = JobStatus(data["status"])
        return cls(**data)

    def heartbeat_age(self, now: float | None = None) -> float:
        """Seconds since the job last proved it was alive (since it started, before its first heartbeat)."""
        last = self.heartbeat_at or self.started_at or self.created_at
        return (now or time.time()) - last


def encode_fields(fields: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v.value if isinstance(v, JobStatus) else v) for k, v in fields.items()}
