"""The HTTP server: feeds from a cache of rendered bytes, pages for people.

Long-lived parts (store, ingester, scheduler) start and stop in cleanup_ctx.
Nothing here blocks the event loop: reads, rendering and ingest run in
worker threads."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from aggregator import __version__
from aggregator.config import Settings
from aggregator.errors import AggregatorError, BadRequest, NotFound
from aggregator.ingest import Clock, utc_now
from aggregator.model import ScanReport
from aggregator.publish import FeedSpec, RenderedFeed, render_feed, render_subscriptions, resolve_spec
from aggregator.metrics import Metrics
from aggregator.render import FORMATS, text_to_html
from aggregator.scheduler import Ingester, reschedule, start_scheduler, watch
from aggregator.storage import Storage

log = logging.getLogger(__name__)

LIVE = web.AppKey("live", "Live")
STORAGE = web.AppKey("storage", Storage)
INGESTER = web.AppKey("ingester", Ingester)
CACHE = web.AppKey("cache", "FeedCache")
SCHEDULE = web.AppKey("schedule", bool)
INGEST = web.AppKey("ingest", bool)
CLOCK = web.AppKey("clock", Clock)  # type: ignore[arg-type]
METRICS = web.AppKey("metrics", Metrics)
SCHEDULER = web.AppKey("scheduler", AsyncIOScheduler)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_CACHED_FEEDS = 1024


@dataclass
class Live:
    """What SIGHUP may change while the service runs."""

    settings: Settings


def settings_of(app: web.Application) -> Settings:
    return app[LIVE].settings


@dataclass
class FeedCache:
    """Rendered feeds by (spec, limit, page), and the feeds tag addresses
    resolve to, dropped whole when the data changes.

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


async def in_thread(func: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(None, func, *args)


# --- errors: the one place exceptions become HTTP statuses -------------------

STATUS = {NotFound: 404, BadRequest: 400}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except AggregatorError as error:
        status = STATUS.get(type(error), 503)
        if status == 503:
            log.error("%s %s: %s", request.method, request.path, error)
        return web.Response(status=status, text=f"{error}\n")


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as error:
        status = error.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        request.app[METRICS].requests.labels(route, str(status)).inc()


# --- feeds -----------------------------------------------------------------


def parse_number(request: web.Request, name: str, default: int, cap: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < 1 or (cap is not None and int(raw) > cap):
        upper = f" to {cap}" if cap is not None else " or more"
        raise BadRequest(f"{name} must be a whole number from 1{upper}, got {raw!r}")
    return int(raw)


async def canonical_spec(request: web.Request, fmt: str, raw_tags: str) -> FeedSpec:
    # Kept with the rendered feeds: a cached tag feed, and its 304, is then
    # answered without reading the store.
    spec = await from_cache(request.app[CACHE], ("spec", fmt, raw_tags),
                            partial(resolve_spec, request.app[STORAGE], fmt, raw_tags))
    if spec.path != request.path:
        # Display names and odd case work, but each feed has one address.
        location = spec.path + (f"?{request.query_string}" if request.query_string else "")
        raise web.HTTPMovedPermanently(location)
    return spec


def not_modified(request: web.Request, feed: RenderedFeed, etag: str) -> bool:
    match = request.headers.get("If-None-Match")
    if match is not None:
        tags = {t.strip().removeprefix("W/") for t in match.split(",")}
        return "*" in tags or etag in tags or feed.etag in tags
    since = request.if_modified_since
    return since is not None and feed.last_modified.replace(microsecond=0) <= since


def accepts_gzip(request: web.Request) -> bool:
    for part in request.headers.get("Accept-Encoding", "").split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


async def from_cache(cache: FeedCache, key: Hashable, make: Callable[[], Any]) -> Any:
    """What the cache holds under the key, or made now in a worker thread."""
    value = cache.entries.get(key)
    if value is None:
        generation = cache.generation
        value = await in_thread(make)
        if generation == cache.generation:
            cache.put(key, value)
    return value


async def cached(request: web.Request, key: Hashable, render: Callable[[], RenderedFeed]) -> RenderedFeed:
    """Rendered bytes from the cache, or rendered now in a worker thread."""
    cache = request.app[CACHE]
    if key in cache.entries:
        cache.hits += 1
    else:
        cache.misses += 1
    return await from_cache(cache, key, render)


def respond(request: web.Request, feed: RenderedFeed) -> web.Response:
    """Conditional GET, gzip once per version, and the caching headers."""
    gzipped = accepts_gzip(request)
    # Each representation has its own strong validator.
    etag = feed.etag[:-1] + '-gzip"' if gzipped else feed.etag
    headers = {
        "ETag": etag,
        "Cache-Control": f"public, max-age={settings_of(request.app).feeds_max_age_seconds}",
        "Vary": "Accept-Encoding",
    }
    if not_modified(request, feed, etag):
        request.app[METRICS].not_modified.inc()
        response = web.Response(status=304, headers=headers)
    else:
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        response = web.Response(body=feed.gzipped if gzipped else feed.body, headers=headers)
        response.headers["Content-Type"] = feed.content_type
    response.last_modified = feed.last_modified
    return response


async def serve_feed(request: web.Request, spec: FeedSpec) -> web.StreamResponse:
    settings = settings_of(request.app)
    limit = parse_number(request, "limit", settings.feeds_limit, settings.feeds_max_limit)
    page = parse_number(request, "page", 1)
    storage = request.app[STORAGE]
    feed = await cached(request, (spec, limit, page),
                        partial(render_feed, storage, settings, spec, limit, page))
    return respond(request, feed)


async def subscriptions(request: web.Request) -> web.StreamResponse:
    render = partial(render_subscriptions, request.app[STORAGE], settings_of(request.app))
    return respond(request, await cached(request, "opml", render))


async def overall_feed(request: web.Request) -> web.StreamResponse:
    return await serve_feed(request, FeedSpec(request.match_info["fmt"]))


async def tag_feed(request: web.Request) -> web.StreamResponse:
    spec = await canonical_spec(request, request.match_info["fmt"], request.match_info["tags"])
    return await serve_feed(request, spec)


# --- pages for people --------------------------------------------------------


def feed_links(base: str, spec_name: str) -> list[dict[str, str]]:
    return [
        {"fmt": fmt, "type": FORMATS[fmt].split(";")[0], "href": f"{base}/feeds/{spec_name}.{fmt}"}
        for fmt in FORMATS
    ]


@aiohttp_jinja2.template("index.html")
async def index_page(request: web.Request) -> dict[str, Any]:
    settings, storage = settings_of(request.app), request.app[STORAGE]
    tags = await in_thread(storage.tags)
    items = await in_thread(storage.newest_items, settings.feeds_limit)
    total = await in_thread(storage.item_count)
    return {
        "settings": settings,
        "title": settings.feeds_title,
        "feeds": feed_links(settings.base_url, "all"),
        "tags": tags,
        "formats": list(FORMATS),
        "total": total,
        "items": items,
        "last_scan": request.app[INGESTER].last_report,
    }


@aiohttp_jinja2.template("tag.html")
async def tag_page(request: web.Request) -> dict[str, Any]:
    settings, storage = settings_of(request.app), request.app[STORAGE]
    tag = await in_thread(storage.find_tag, request.match_info["slug"])
    if tag is None:
        raise NotFound(f"no tag {request.match_info['slug']!r}")
    if tag.slug != request.match_info["slug"]:
        raise web.HTTPMovedPermanently(f"/tags/{tag.slug}")
    items = await in_thread(storage.newest_items, settings.feeds_max_limit, 0, (tag.slug,))
    return {
        "settings": settings,
        "title": f"{settings.feeds_title}: {tag.name}",
        "tag": tag,
        "feeds": feed_links(settings.base_url, f"tags/{tag.slug}"),
        "items": items,
    }


@aiohttp_jinja2.template("item.html")
async def item_page(request: web.Request) -> dict[str, Any]:
    settings, storage = settings_of(request.app), request.app[STORAGE]
    item = await in_thread(storage.item, request.match_info["key"])
    if item is None:
        raise NotFound(f"no item {request.match_info['key']!r}")
    return {
        "settings": settings,
        "title": item.title,
        "item": item,
        # A standfirst is shown above the text; a teaser the text starts with is not.
        "standfirst": item.content and item.summary and not item.content.startswith(item.summary),
        "feeds": feed_links(settings.base_url, "all")
        + [link for tag in item.tags for link in feed_links(settings.base_url, f"tags/{tag.slug}")],
    }


# --- the application -----------------------------------------------------------


async def storage_ctx(app: web.Application) -> AsyncIterator[None]:
    storage = await in_thread(Storage, settings_of(app).database_url)
    try:
        # A service that scans must be the only ingester of its database.
        lock = await in_thread(storage.ingest_lock) if app[SCHEDULE] and app[INGEST] else None
    except AggregatorError:
        storage.close()
        raise
    app[STORAGE] = storage
    yield
    if lock is not None:
        lock.release()
    storage.close()


async def ingester_ctx(app: web.Application) -> AsyncIterator[None]:
    settings = settings_of(app)
    ingester = Ingester(settings, app[STORAGE], app[CLOCK])

    def fresh_feeds(report: ScanReport, feeds: dict[FeedSpec, RenderedFeed]) -> None:
        if feeds:  # rendered with the default limit, as the first page
            limit = settings_of(app).feeds_limit
            app[CACHE].refresh({(spec, limit, 1): feed for spec, feed in feeds.items()})

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
    await asyncio.get_running_loop().run_in_executor(None, ingester.close)


REPLICA_POLL_SECONDS = 0.5


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
    app[LIVE].settings = settings
    app[INGESTER].settings = settings
    if SCHEDULER in app:
        reschedule(app[SCHEDULER], settings.seeds_interval_seconds)
    app[CACHE].invalidate()  # titles and limits show in the feeds


# --- health, readiness, metrics ---------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def readiness(app: web.Application, now: datetime) -> str | None:
    """Why the service is not ready, or None."""
    if not app[INGEST]:
        return None  # a replica is ready when its database answers
    ingester = app[INGESTER]
    limit = timedelta(seconds=3 * settings_of(app).seeds_interval_seconds)
    if ingester.last_success is None:
        if ingester.last_error:
            return f"last scan failed: {ingester.last_error}"
        return "no scan finished yet"
    if now - ingester.last_success > limit:
        return f"no scan finished since {ingester.last_success.isoformat()}"
    return None


async def readyz(request: web.Request) -> web.Response:
    try:
        await in_thread(request.app[STORAGE].ping)
        reason = readiness(request.app, request.app[CLOCK]())
    except AggregatorError as error:
        reason = str(error)
    if reason:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


async def metrics(request: web.Request) -> web.Response:
    stats = await in_thread(request.app[STORAGE].stats)
    request.app[METRICS].observe_store(*stats)
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def report_json(report: ScanReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    return {
        "finished": report.finished.isoformat(),
        "seconds": round(report.seconds, 3),
        "files_seen": report.files_seen,
        "files_changed": report.files_changed,
        "new_items": report.new_items,
        "updated_items": report.updated_items,
        "failed": [{"path": f.path, "status": f.status, "reason": f.reason} for f in report.files_failed],
    }


async def status(request: web.Request) -> web.Response:
    items, tags, files = await in_thread(request.app[STORAGE].stats)
    ingester = request.app[INGESTER]
    return web.json_response({
        "pid": os.getpid(),
        "version": __version__,
        "items": items,
        "tags": tags,
        "files": files,
        "last_scan": report_json(ingester.last_report),
        "last_error": ingester.last_error,
    })


def make_app(settings: Settings, *, schedule: bool = True, ingest: bool = True,
             clock: Clock = utc_now) -> web.Application:
    """The service. With schedule=False nothing scans by itself (tests call
    app[INGESTER].scan()); with ingest=False it is a replica serving what
    another process ingests into the same database."""
    app = web.Application(middlewares=[metrics_middleware, errors_middleware])
    app[LIVE] = Live(settings)
    cache = app[CACHE] = FeedCache()
    app[METRICS] = Metrics(lambda: (cache.hits, cache.misses))
    app[SCHEDULE] = schedule
    app[INGEST] = ingest
    app[CLOCK] = clock
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("aggregator", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.filters["paragraphs"] = lambda text: jinja2.utils.markupsafe.Markup(text_to_html(text or ""))
    env.filters["isodate"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M UTC")
    app.cleanup_ctx.append(storage_ctx)
    app.cleanup_ctx.append(ingester_ctx)
    fmt = "{fmt:rss|atom|json}"
    app.router.add_get(f"/feeds/all.{fmt}", overall_feed)
    app.router.add_get(f"/feeds/tags/{{tags}}.{fmt}", tag_feed)
    app.router.add_get("/feeds.opml", subscriptions)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status.json", status)
    app.router.add_get("/", index_page)
    app.router.add_get("/tags/{slug}", tag_page)
    app.router.add_get("/items/{key}", item_page)
    return app
