"""The server's cache of rendered feeds, dropped whole when the data changes."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from aggregator.publish import FeedSpec, RenderedFeed

MAX_CACHED_FEEDS = 1024


@dataclass
class FeedCache:
    """Rendered feeds by (spec, limit, page), and the feeds tag addresses
    resolve to.

    The generation guards against a render that started before a change
    landing in the cache after it."""

    entries: dict[Hashable, Any] = field(default_factory=dict)
    generation: int = 0
    hits: int = 0
    misses: int = 0

    def invalidate(self) -> None:
        self.generation += 1
        self.entries.clear()

    def refresh(self, feeds: dict[tuple[FeedSpec, int, int], RenderedFeed]) -> None:
        """New data: drop everything, keep the feeds the ingester just rendered."""
        self.invalidate()
        for key, feed in feeds.items():
            self.put(key, feed)

    def put(self, key: Hashable, value: Any) -> None:
        # Bounded: every ?limit= and ?page= is its own entry, and a months-long
        # process must not grow with what clients ask for. Oldest goes first.
        if len(self.entries) >= MAX_CACHED_FEEDS:
            del self.entries[next(iter(self.entries))]
        self.entries[key] = value
