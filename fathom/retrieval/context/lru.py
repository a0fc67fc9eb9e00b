"""One thread-safe LRU bounded by the total size of what it holds (the assembler's process caches use it)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SizedLRU(Generic[K, V]):
    """Least recently used entries go first once the sizes given to ``put`` add up to more than ``max_size``.

    An entry larger than the whole bound is never stored (it would evict everything else and then itself).
    """

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.size = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self.items.get(key)
            if hit is None:
                return None
            self.items.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V, size: int) -> None:
        if size > self.max_size:
            return
        with self._lock:
            if key in self.items:
                return
            self.items[key] = (value, size)
            self.size += size
            while self.size > self.max_size:
                _, (_, old) = self.items.popitem(last=False)
                self.size -= old

    def __len__(self) -> int:
        return len(self.items)
