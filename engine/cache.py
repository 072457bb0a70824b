"""One small cache for the engine: a thread-safe LRU keyed by content digests.

    cache = LRUCache(maxsize=256)                          # at most 256 entries
    cache = LRUCache(maxsize=256 * 2**20, weigh=nbytes)    # or at most 256 MiB of values
    value = cache.get_or_compute(key, lambda: expensive())   # computed once per key
    key = content_digest(source)                           # sha256 of bytes or a file; None if unreadable

`get_or_compute` computes a missing value in one thread while the others asking for the same
key wait for it (a photo or clip sent by two requests at once is read once); if the computation
fails, the error goes to its caller and a waiting thread tries again. Values are shared, so they
must not be changed after they are cached.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """Least-recently-used cache; `maxsize` counts entries, or the sum of `weigh(value)` when given."""

    def __init__(self, maxsize: int = 128, weigh: Callable[[V], int] | None = None):
        self.maxsize, self._weigh = maxsize, weigh or (lambda value: 1)
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}  # keys being computed right now
        self._total = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, default: V | None = None) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return default
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: V) -> None:
        weight = self._weigh(value)
        with self._lock:
            old = self._entries.pop(key, None)
            self._total -= old[1] if old else 0
            if weight > self.maxsize:  # larger than the whole cache: not kept
                return
            self._entries[key] = (value, weight)
            self._total += weight
            while self._total > self.maxsize:
                self._total -= self._entries.popitem(last=False)[1][1]

    def get_or_compute(self, key: Hashable, compute: Callable[[], V]) -> V:
        """The cached value; else one thread runs `compute` while the others asking for `key` wait."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    return entry[0]
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = threading.Event()
                    break
            pending.wait()  # another thread is on it: its result is cached (or it failed: try again)
        try:
            value = compute()
            self.put(key, value)
            return value
        finally:
            with self._lock:
                self._pending.pop(key).set()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total = 0

    cache_clear = clear  # functools.lru_cache's name, for callers written against it

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries


def content_digest(source) -> str | None:
    """sha256 (hex) of bytes or of a file's contents; None when the file cannot be read (the
    decoder then reports the problem with its own message)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return hashlib.sha256(source).hexdigest()
    if isinstance(source, (str, Path)):
        try:
            with open(source, "rb") as file:
                return hashlib.file_digest(file, "sha256").hexdigest()
        except OSError:
            return None
    return None
