"""The scheduled ingester: an APScheduler interval job (and a scan at start)
that runs ingest.run_once in a worker thread and tells the server when the
data changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator.config import Settings
from aggregator.ingest import Clock, run_once, utc_now
from aggregator.model import ScanReport
from aggregator.publish import export_feeds
from aggregator.storage import Storage

log = logging.getLogger(__name__)


class Ingester:
    """Runs scans one at a time on a single writer thread: SQLite takes one
    writer, and overlapping scans of one folder would only repeat work."""

    def __init__(self, settings: Settings, storage: Storage,
                 on_change: Callable[[ScanReport], None] = lambda report: None,
                 clock: Clock = utc_now):
        self.settings = settings
        self.storage = storage
        self.on_change = on_change
        self.clock = clock
        self.last_report: ScanReport | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self._lock = asyncio.Lock()
        self._exported = False

    def scan_blocking(self) -> ScanReport:
        report = run_once(self.storage, self.settings.seeds_dir, self.settings.seeds_ignore,
                          self.clock)
        if report.changed_data or not self._exported:
            export_feeds(self.storage, self.settings)
            self._exported = True
        return report

    async def scan(self) -> ScanReport:
        async with self._lock:
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(self._executor, self.scan_blocking)
        self.last_report = report
        log.info(
            "scan done in %.2fs: %d files, %d changed, %d failed, %d new items, %d updated",
            report.seconds, report.files_seen, report.files_changed,
            len(report.files_failed), report.new_items, report.updated_items,
        )
        if report.changed_data:
            self.on_change(report)
        return report

    async def scan_logged(self) -> None:
        """The scheduled job: a failed scan is logged, and the next one tries again."""
        try:
            await self.scan()
        except Exception:
            log.exception("scan of %s failed", self.settings.seeds_dir)

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def start_scheduler(ingester: Ingester, interval_seconds: int, first_run: datetime | None = None) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(timezone=timezone.utc)
    scheduler.add_job(
        ingester.scan_logged,
        "interval",
        seconds=interval_seconds,
        id="scan",
        next_run_time=first_run or datetime.now(timezone.utc),
        max_instances=1,  # a slow scan is not overlapped by the next one …
        coalesce=True,  # … and missed runs collapse into one
        misfire_grace_time=interval_seconds,
    )
    scheduler.start()
    return scheduler
