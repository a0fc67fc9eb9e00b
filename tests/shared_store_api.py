"""An API process whose vector store is the shared server-backend store of ``tests.shared_store`` (argv: store
port, API port). Settings come from the environment (``FATHOM_*``) as for ``fathom serve``; only the store
construction is redirected to the shared host, so several of these processes write one index like API
replicas in front of one Qdrant cluster.
"""

from __future__ import annotations

import sys

import uvicorn

import fathom.service.runtime as runtime_module
from fathom.service.core.config import get_settings
from fathom.service.app import create_app
from tests.shared_store import RemoteStore


def main() -> None:
    store_port, api_port = int(sys.argv[1]), int(sys.argv[2])
    runtime_module.open_store = lambda settings: RemoteStore(("127.0.0.1", store_port))  # type: ignore[assignment]
    settings = get_settings()
    uvicorn.run(create_app(settings), host="127.0.0.1", port=api_port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
