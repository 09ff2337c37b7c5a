"""The ingester of a running service: scans on a schedule (APScheduler), on
file-system events (watchfiles) and at start-up, one at a time on a worker
thread, and tells the server when the data changed."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from watchfiles import Change, awatch

from aggregator.clock import Clock, utc_now
from aggregator.config import Settings
from aggregator.errors import first_line
from aggregator.ingest import run_once
from aggregator.model import ScanReport
from aggregator.publish import FeedSpec, RenderedFeed, render_all, write_feeds
from aggregator.seeds import Listing, is_ignored
from aggregator.storage import Storage

log = logging.getLogger(__name__)

Feeds = dict[FeedSpec, RenderedFeed]


class Ingester:
    """Runs scans one at a time on a single writer thread: SQLite takes one
    writer, and overlapping scans of one folder would only repeat work.

    Scan requests (timer, file events, start-up) only set a flag; one runner
    task scans while the flag is set, so a burst of 1000 new files makes a
    few scans, not 1000."""

    def __init__(self, settings: Settings, storage: Storage, clock: Clock = utc_now):
        self.settings = settings
        self.storage = storage
        self.clock = clock
        self.last_report: ScanReport | None = None
        self.last_success: datetime | None = None
        self.last_error: str | None = None
        self.first_scan = asyncio.Event()
        # Told of every scan, with the feeds rendered anew (see scan_blocking):
        # the server's cache and metrics.
        self.observers: list[Callable[[ScanReport, Feeds | None], None]] = []
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingest")
        self._lock = asyncio.Lock()
        self._wanted = asyncio.Event()
        self._stopping = False
        self._idle = threading.Event()  # no scan running on the worker thread
        self._idle.set()
        self.unexported = True  # every service writes its feeds once on start
        self.export_error: str | None = None  # why the feeds are not rendered or written

    def scan_blocking(self) -> tuple[ScanReport, Feeds | None]:
        """A scan, then the feeds rendered anew when the data changed: None
        when nothing changed, empty when they could not be rendered."""
        self._idle.clear()
        try:
            return self._scan_and_render()
        finally:
            self._idle.set()

    def _scan_and_render(self) -> tuple[ScanReport, Feeds | None]:
        settings = self.settings
        report = run_once(self.storage, settings.seeds_dir, settings.seeds_ignore, self.clock,
                          settings.seeds_settle_seconds, lambda: self._stopping, settings.seeds_max_file_bytes)
        touched, forgot = self.storage.take_touched()
        if not (report.changed_data or touched or forgot or self.unexported):
            return report, None
        # Only the feeds whose entries changed: the overall ones and those of
        # the tags of every item that changed. Everything after a failure, a
        # deletion or new settings.
        tag_slugs = None if self.unexported or forgot else self.storage.tag_slugs_of(touched)
        # The data is committed: until the feeds show it and the export folder
        # holds it, it stays unexported and every scan tries again.
        self.unexported = True
        try:
            # Rendered once: written to the export folder and handed to the
            # server's cache, so no request renders them again.
            feeds = render_all(self.storage, settings, tag_slugs)
        except Exception as error:
            self.export_error = f"cannot render the feeds: {first_line(error)}"
            log.exception("cannot render the feeds; the server renders each as it is asked for")
            return report, {}
        try:
            write_feeds(feeds, settings.feeds_export_dir)
        except OSError as error:
            self.export_error = f"cannot write the feeds to {settings.feeds_export_dir}: {first_line(error)}"
            log.error("%s; served feeds are up to date, the next scan writes them again", self.export_error)
        else:
            self.unexported = False
            self.export_error = None
        return report, feeds

    @property
    def busy(self) -> bool:
        """A scan is running on the worker thread."""
        return not self._idle.is_set()

    def reexport(self) -> None:
        """Render and write every feed again, data changed or not (new settings)."""
        self.unexported = True
        self.request_scan()

    async def scan(self) -> ScanReport:
        async with self._lock:
            loop = asyncio.get_running_loop()
            report, feeds = await loop.run_in_executor(self._executor, self.scan_blocking)
        self.last_report = report
        self.last_success = report.finished
        self.last_error = None
        log.info(
            "scan done in %.2fs: %d files, %d changed, %s, %d new items, %d updated%s",
            report.seconds, report.files_seen, report.files_changed, report.not_read_counts,
            report.new_items, report.updated_items,
            f", {report.deferred} still being written" if report.deferred else "",
        )
        for observer in self.observers:
            observer(report, feeds)
        if report.deferred:
            # Look again once the files being written have had time to settle.
            asyncio.get_running_loop().call_later(self.settings.seeds_settle_seconds, self.request_scan)
        return report

    async def scan_logged(self) -> None:
        """A failed scan is logged, and the next one tries again."""
        try:
            await self.scan()
        except Exception as error:
            self.last_error = first_line(error)
            log.exception("scan of %s failed", self.settings.seeds_dir)
        finally:
            self.first_scan.set()

    def request_scan(self) -> None:
        if not self._stopping:
            self._wanted.set()

    async def run(self) -> None:
        """Scan whenever asked, until cancelled."""
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            await self.scan_logged()

    def stop(self) -> None:
        """Finish the file being ingested, then no more."""
        self._stopping = True

    def close(self, timeout: float | None = None) -> bool:
        """No more scans; wait up to `timeout` seconds for the one running.
        False when it is still running (a huge page): its transaction is then
        abandoned with the process, and the file is read again on the next start."""
        self._stopping = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        return self._idle.wait(timeout)


def start_scheduler(ingester: Ingester, interval_seconds: int) -> AsyncIOScheduler:
    """The safety net: a scan every interval even when no file event came
    (events can be lost, e.g. on network file systems)."""
    scheduler = AsyncIOScheduler(timezone=timezone.utc)
    scheduler.add_job(
        ingester.request_scan,
        "interval",
        seconds=interval_seconds,
        id="scan",
        next_run_time=datetime.now(timezone.utc) + timedelta(seconds=interval_seconds),
        max_instances=1,
        coalesce=True,  # missed runs (a suspended laptop) collapse into one
        misfire_grace_time=interval_seconds,
    )
    scheduler.start()
    return scheduler


def reschedule(scheduler: AsyncIOScheduler, interval_seconds: int) -> None:
    scheduler.reschedule_job("scan", trigger="interval", seconds=interval_seconds)


def watched_folders(folder: Path, ignore: tuple[str, ...]) -> list[str]:
    """The folders a scan reads, not through symbolic links: what the watcher
    watches, each on its own (watchfiles' recursive mode follows links: a link
    to /usr would cost tens of thousands of inotify watches)."""
    listing = Listing(folder, ignore)
    for _ in listing:
        pass
    return listing.folders


async def watch(ingester: Ingester, stop: asyncio.Event) -> None:
    """Ask for a scan when files in the seed folder change (inotify on Linux)."""
    folder = ingester.settings.seeds_dir

    def wanted(change: Change, path: str) -> bool:
        return not is_ignored(Path(path).name, ingester.settings.seeds_ignore)

    try:
        while not stop.is_set():
            folders = watched_folders(folder, ingester.settings.seeds_ignore)
            async for changes in awatch(*folders, watch_filter=wanted, debounce=200, step=50, stop_event=stop,
                                        recursive=False, ignore_permission_denied=True):
                log.debug("%d changes in %s", len(changes), folder)
                ingester.request_scan()
                if any(change != Change.modified and os.path.isdir(path) and not os.path.islink(path)
                       for change, path in changes):
                    break  # a folder came or went: watch the new set
    except Exception:
        # Without events the scheduled scan still picks files up, only later.
        log.exception("watching %s failed; relying on the scan every %ds", folder,
                      ingester.settings.seeds_interval_seconds)
