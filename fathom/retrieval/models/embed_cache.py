"""A persistent cache of passage embeddings keyed by (model, exact text).

Reindexing re-chunks documents whose text mostly did not change, and the
benchmarks ingest the same corpora again and again; mpnet costs ~70 ms per
passage here. Keying on the exact text (and the model's identity, which
includes its weight hash) makes a hit always correct. SQLite in WAL mode lets
the API process and a worker share one cache file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np


class EmbeddingCache:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS emb (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(model: str, text: str) -> bytes:
        return hashlib.blake2b(f"{model}\x00{text}".encode(), digest_size=20).digest()

    def get_or_compute(self, model: str, texts: Sequence[str], compute: Callable[[Sequence[str]], np.ndarray],
                       dim: int) -> np.ndarray:
        """Embeddings for ``texts``; only the texts not cached are passed to ``compute``."""
        keys = [self._key(model, t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                rows = self._db.execute(f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(part))})", part).fetchall()
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            vecs = np.asarray(compute([texts[i] for i in missing]), dtype=np.float32)
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                     [(keys[i], vecs[j].tobytes()) for j, i in enumerate(missing)])
            for j, i in enumerate(missing):
                found[keys[i]] = vecs[j]
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, k in enumerate(keys):
            out[i] = found[k]
        return out

    def close(self) -> None:
        self._db.close()
