"""Prometheus metrics of one service process (GET /metrics)."""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric

from aggregator.model import FileStatus, ScanReport

SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600)


class CacheCollector:
    """Feed cache hits and misses, read from the cache at scrape time."""

    def __init__(self, counts: Callable[[], tuple[int, int]]):
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        hits, misses = self.counts()
        family = CounterMetricFamily("aggregator_feed_cache", "Feed requests answered from the "
                                     "rendered-bytes cache (hit) or rendered anew (miss)",
                                     labels=["result"])
        family.add_metric(["hit"], hits)
        family.add_metric(["miss"], misses)
        yield family


class RequestCollector:
    """HTTP requests by route and status, counted in a plain dict on each
    request (a labelled Counter's lookup cost more than the rest of a cached
    feed's answer) and turned into a metric at scrape time."""

    def __init__(self, counts: collections.Counter[tuple[str, int]]):
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("aggregator_http_requests", "HTTP requests by route and status",
                                     labels=["route", "status"])
        for (route, status), count in sorted(self.counts.items()):
            family.add_metric([route, str(status)], count)
        yield family


class Metrics:
    def __init__(self, cache_counts: Callable[[], tuple[int, int]]):
        self.registry = registry = CollectorRegistry()
        self.items = Gauge("aggregator_items", "Items stored", registry=registry)
        self.tags = Gauge("aggregator_tags", "Tags stored", registry=registry)
        self.files = Gauge("aggregator_files", "Seed files by status", ["status"], registry=registry)
        self.scans = Counter("aggregator_scans", "Scans of the seed folder", ["result"], registry=registry)
        self.scan_seconds = Histogram("aggregator_scan_duration_seconds", "Duration of scans",
                                      buckets=SECONDS, registry=registry)
        self.last_success = Gauge("aggregator_last_successful_scan_timestamp_seconds",
                                  "When the last scan finished without error", registry=registry)
        self.file_to_feed = Histogram(
            "aggregator_file_to_feed_seconds",
            "From a seed file's modification to its items being in the feeds",
            buckets=SECONDS, registry=registry)
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        registry.register(RequestCollector(self.requests))
        self.not_modified = Counter("aggregator_http_not_modified",
                                    "Conditional requests answered 304 Not Modified", registry=registry)
        registry.register(CacheCollector(cache_counts))

    def observe_scan(self, report: ScanReport, _feeds: object = None) -> None:
        self.scans.labels("ok").inc()
        self.scan_seconds.observe(report.seconds)
        self.last_success.set(report.finished.timestamp())
        if report.changed_data:
            now = time.time()
            for result in report.files:
                if result.status == FileStatus.OK and result.mtime is not None:
                    self.file_to_feed.observe(max(0.0, now - result.mtime))

    def observe_store(self, items: int, tags: int, files: dict[str, int]) -> None:
        self.items.set(items)
        self.tags.set(tags)
        for status in FileStatus:
            self.files.labels(status).set(files.get(status, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
