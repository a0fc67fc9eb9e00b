"""JSON log lines, each stamped with the request id and tenant of the request that wrote it.

Content rule: queries and chunk text are never logged unless
``FATHOM_SERVICE__DEBUG_LOG_CONTENT=true`` (the retrieve endpoint adds the
query to its access line only then). Everything else that is logged is ids,
codes, counts and timings.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from fathom.service.core.config import ServiceSettings
from fathom.service.observability import context

ACCESS = logging.getLogger("fathom.access")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
        }
        ctx = context.current()
        if ctx is not None:
            line["request_id"] = ctx.request_id
            if ctx.tenant:
                line["tenant"] = ctx.tenant
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def json_handler(stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(settings: ServiceSettings) -> None:
    """Root logger → one JSON handler on stderr, replacing the CLI's plain one.

    ``fathom serve`` calls this and starts uvicorn with ``log_config=None`` so
    uvicorn's own lines propagate here instead of to its plain handlers.
    """
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(json_handler())
    root.setLevel(settings.log_level.upper())
