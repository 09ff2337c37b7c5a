"""The running service's parts and their lives: the store and its ingest
lock, the ingester, the scheduler and the file watcher, or, on a replica, the
follower of another ingester's commits; reloading the configuration; whether
it is ready. Started and stopped with the aiohttp app (cleanup_ctx); the
handlers in web.py only read what is set up here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator.cache import FeedCache
from aggregator.clock import Clock
from aggregator.config import Settings
from aggregator.errors import AggregatorError
from aggregator.metrics import Metrics
from aggregator.model import ScanReport
from aggregator.publish import FeedSpec, RenderedFeed
from aggregator.scheduler import Ingester, reschedule, start_scheduler, watch
from aggregator.storage import IngestLock, Storage

log = logging.getLogger(__name__)


@dataclass
class Live:
    """What SIGHUP may change while the service runs."""

    settings: Settings
    # When these settings took effect: feeds may read differently from then
    # on (a title, a newer aggregator), so no Last-Modified is earlier.
    since: datetime

    @property
    def feed_cache_control(self) -> str:
        return f"public, max-age={self.settings.feeds_max_age_seconds}"


LIVE = web.AppKey("live", Live)
STORAGE = web.AppKey("storage", Storage)
INGESTER = web.AppKey("ingester", Ingester)
CACHE = web.AppKey("cache", FeedCache)
SCHEDULE = web.AppKey("schedule", bool)
INGEST = web.AppKey("ingest", bool)
CLOCK = web.AppKey("clock", Clock)  # type: ignore[arg-type]
METRICS = web.AppKey("metrics", Metrics)
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)

REPLICA_POLL_SECONDS = 0.5
# How long a stop waits for the file being ingested: with the requests'
# grace time, a stop stays under 5 s whatever the ingester is doing.
INGEST_STOP_SECONDS = 1.5


def settings_of(app: web.Application) -> Settings:
    return app[LIVE].settings


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def setup(app: web.Application, settings: Settings, *, schedule: bool, ingest: bool, clock: Clock) -> None:
    """Give the app its parts; they start and stop with it."""
    app[LIVE] = Live(settings, clock())
    cache = app[CACHE] = FeedCache(settings.feeds_cache_bytes)
    app[METRICS] = Metrics(lambda: (cache.hits, cache.misses))
    app[SCHEDULE] = schedule
    app[INGEST] = ingest
    app[CLOCK] = clock
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(ingester_ctx)


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = await in_thread(Storage, settings_of(app).database_url)
    lock: IngestLock | None = None
    try:
        # A service that scans must be the only ingester of its database.
        if app[SCHEDULE] and app[INGEST]:
            lock = await in_thread(storage.ingest_lock)
    except AggregatorError:
        storage.close()
        raise
    app[STORAGE] = storage
    with storage, lock or IngestLock(None):
        yield


async def ingester_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app)
    ingester = Ingester(settings, app[STORAGE], app[CLOCK])

    def fresh_feeds(report: ScanReport, feeds: dict[FeedSpec, RenderedFeed] | None) -> None:
        if feeds:  # rendered with the default limit, as the first page
            limit = settings_of(app).feeds_limit
            app[CACHE].refresh({(spec, limit, 1): feed for spec, feed in feeds.items()})
        elif feeds is not None:  # new data, not rendered: each feed is rendered when asked for
            app[CACHE].invalidate()

    ingester.observers += [fresh_feeds, app[METRICS].observe_scan]
    app[INGESTER] = ingester
    tasks = []
    stop_watching = asyncio.Event()
    if not app[INGEST]:
        # A replica: another process ingests; follow its commits.
        ingester.first_scan.set()
        tasks.append(asyncio.create_task(follow(app), name="follower"))
    elif app[SCHEDULE]:
        app[SCHEDULER] = start_scheduler(ingester, settings.seeds_interval_seconds)
        tasks.append(asyncio.create_task(ingester.run(), name="ingester"))
        if settings.seeds_watch:
            tasks.append(asyncio.create_task(watch(ingester, stop_watching), name="watcher"))
        ingester.request_scan()  # the scan at start-up
    yield
    stop_watching.set()
    if SCHEDULER in app:
        app[SCHEDULER].shutdown(wait=False)
    ingester.stop()  # the file being ingested finishes, no other starts
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if not await in_thread(ingester.close, INGEST_STOP_SECONDS):
        log.warning("stopping with a file half ingested: nothing of it is kept, it is read again on the next start")


async def follow(app: web.Application) -> None:
    """Drop cached feeds when the ingesting process committed a change: one
    primary-key read per half second, so new items show within a second."""
    storage, cache = app[STORAGE], app[CACHE]
    seen = None
    while True:
        try:
            version = await in_thread(storage.data_version)
            if version != seen:
                if seen is not None:
                    cache.invalidate()
                seen = version
        except AggregatorError as error:
            log.warning("cannot read the data version: %s", error)
        await asyncio.sleep(REPLICA_POLL_SECONDS)


def reload(app: web.Application, settings: Settings) -> None:
    """Apply a new configuration to the running service (SIGHUP). The seed
    folder, database and address stay: changing them takes a restart."""
    app[LIVE].settings, app[LIVE].since = settings, app[CLOCK]()
    app[INGESTER].settings = settings
    if SCHEDULER in app:
        reschedule(app[SCHEDULER], settings.seeds_interval_seconds)
    app[CACHE].max_bytes = settings.feeds_cache_bytes
    app[CACHE].invalidate()  # titles and limits show in the feeds
    app[INGESTER].reexport()  # and in the exported files


def readiness(app: web.Application, now: datetime) -> str | None:
    """Why the service is not ready, or None."""
    if not app[INGEST]:
        return None  # a replica is ready when its database answers
    ingester = app[INGESTER]
    limit = timedelta(seconds=3 * settings_of(app).seeds_interval_seconds)
    if ingester.last_error:
        return f"last scan failed: {ingester.last_error}"
    if ingester.export_error:
        return ingester.export_error
    if ingester.last_success is None:
        return "no scan finished yet"
    if now - ingester.last_success > limit:
        return f"no scan finished since {ingester.last_success.isoformat()}"
    return None
