"""The server's cache of rendered feeds, dropped whole when the data changes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from aggregator.publish import RenderedFeed

MAX_CACHED_FEEDS = 1024
ENTRY_OVERHEAD = 512  # bytes a cached entry costs besides its bodies: key, headers, dict slot


def cost(value: Any) -> int:
    """Bytes a cached value holds: a feed's body and its gzip."""
    if isinstance(value, RenderedFeed):
        return ENTRY_OVERHEAD + len(value.body) + len(value.gzipped)
    return ENTRY_OVERHEAD


@dataclass
class FeedCache:
    """Rendered feeds by (spec, limit, page), and the feeds tag addresses
    resolve to; bounded in bytes and in entries.

    The generation guards against a render that started before a change
    landing in the cache after it."""

    max_bytes: int = 64 * 1024 * 1024
    entries: dict[Hashable, Any] = field(default_factory=dict)
    size: int = 0  # bytes held, as `cost` counts them
    generation: int = 0
    hits: int = 0
    misses: int = 0

    def invalidate(self) -> None:
        self.generation += 1
        self.entries.clear()
        self.size = 0

    def refresh(self, feeds: dict[Hashable, RenderedFeed]) -> None:
        """New data: drop everything, keep the feeds the ingester just rendered."""
        self.invalidate()
        for key, feed in feeds.items():
            self.put(key, feed)

    def put(self, key: Hashable, value: Any) -> None:
        # Bounded: every ?limit= and ?page= is its own entry, and a months-long
        # process must not grow with what clients ask for. Oldest goes first;
        # a value larger than the whole budget is served, not kept.
        needed = cost(value)
        if needed > self.max_bytes:
            return
        self.discard(key)
        while self.entries and (len(self.entries) >= MAX_CACHED_FEEDS or self.size + needed > self.max_bytes):
            self.discard(next(iter(self.entries)))
        self.entries[key] = value
        self.size += needed

    def discard(self, key: Hashable) -> None:
        if key in self.entries:
            self.size -= cost(self.entries.pop(key))
