"""The HTTP server: handlers, middlewares and the route table. Feeds come
from a cache of rendered bytes, pages are for people. The parts they read
(store, ingester, cache) are set up in service.py. Nothing here blocks the
event loop: reads, rendering and ingest run in worker threads."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from email.utils import format_datetime
from functools import partial
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from aggregator import __version__, service
from aggregator.cache import FeedCache
from aggregator.clock import Clock, utc_now
from aggregator.config import Settings
from aggregator.errors import AggregatorError, BadRequest, NotFound
from aggregator.model import ScanReport, StoredItem
from aggregator.publish import (
    FeedSpec,
    RenderedFeed,
    feed_title,
    render_feed,
    render_subscriptions,
    rendered,
    resolve_spec,
)
from aggregator.render import FORMAT_NAMES, FORMATS, teaser_text, text_to_html
from aggregator.search import BadQuery, SearchQuery, excerpt, highlight, parse_query
from aggregator.service import CACHE, CLOCK, INGESTER, LIVE, METRICS, STORAGE, in_thread, settings_of
from aggregator.storage import COUNT_CAP
from aggregator.urls import ROUTES, Urls, feed_path

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- errors: the one place exceptions become HTTP statuses -------------------

STATUS = {NotFound: 404, BadRequest: 400}


def status_of(error: AggregatorError) -> int:
    """The status of an error's nearest class in the table: a kind of NotFound
    is a 404 too. Anything else the service could not do is a 503."""
    return next((STATUS[cls] for cls in type(error).__mro__ if cls in STATUS), 503)


# Addresses for people; any other (feeds, the OPML, health and status) is
# for programs, and its errors stay plain text.
PAGE_ROUTES = frozenset({"index", "tag_page", "item_page", "search_page"})


def is_for_people(request: web.Request) -> bool:
    """A page's address, or one no route has outside the feeds."""
    name = request.match_info.route.name
    if name is None:
        return not request.path.startswith(("/feeds/", "/feeds.", "/status.", "/metrics"))
    return name in PAGE_ROUTES


def not_found_page(request: web.Request, message: str) -> web.Response:
    settings = settings_of(request.app)
    return aiohttp_jinja2.render_template(
        "404.html", request, page(settings, title=f"Not found: {settings.feeds_title}", message=message,
                                  feeds=feed_links(Urls(settings.base_url), feed_title(settings))),
        status=404)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as statuses (see STATUS), and every answer counted by route and
    status for /metrics: one middleware, as each costs every request a call."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except AggregatorError as error:
        status = status_of(error)
        if status == 503:
            log.error("%s %s: %s", request.method, request.path, error)
        if status == 404 and is_for_people(request):
            return not_found_page(request, str(error))
        return web.Response(status=status, text=f"{error}\n")
    except web.HTTPException as error:
        status = error.status
        if status == 404 and is_for_people(request):
            return not_found_page(request, f"nothing is at {request.path}")
        raise
    finally:
        resource = request.match_info.route.resource
        request.app[METRICS].requests[resource.canonical if resource is not None else "unmatched", status] += 1


# --- feeds -----------------------------------------------------------------


# No feed has this many pages: past it, OFFSET would not fit a 64-bit integer.
MAX_PAGE = 1_000_000


def parse_number(request: web.Request, name: str, default: int, cap: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also takes "²" and "①", which int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= len(str(cap)) and 1 <= int(raw) <= cap):
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        raise BadRequest(f"{name} must be a whole number from 1 to {cap}, got {shown!r}")
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


def not_modified(request: web.Request, etags: tuple[str, ...], last_modified: datetime) -> bool:
    """RFC 9110 13.1: If-None-Match, when sent (on one line or several),
    decides alone; an If-Modified-Since later than now says nothing."""
    lines = request.headers.getall("If-None-Match", ())
    if lines:
        tags = {tag.strip().removeprefix("W/") for line in lines for tag in line.split(",")}
        return "*" in tags or not tags.isdisjoint(etags)
    since = request.if_modified_since
    return since is not None and last_modified <= since <= request.app[CLOCK]()


# A 304 carries the validators and caching headers of the answer, not its body's.
NOT_IN_304 = frozenset({"Content-Type", "Content-Encoding"})


def answer_headers(feed: RenderedFeed, gzipped: bool, since: datetime, cache_control: str
                   ) -> tuple[dict[str, str], dict[str, str], datetime]:
    # Keyed by the feed's validators, not the feed: a feed the cache let go
    # must not stay in memory for its headers' sake.
    return _answer_headers(feed.etag, feed.content_type, feed.last_modified, gzipped, since, cache_control)


@functools.lru_cache(maxsize=4096)
def _answer_headers(etag: str, content_type: str, changed: datetime, gzipped: bool, since: datetime,
                    cache_control: str) -> tuple[dict[str, str], dict[str, str], datetime]:
    """The headers of a feed's answer and of its 304, and its Last-Modified: made once per
    feed version and representation, not per request. Last-Modified is in
    whole seconds, as the header carries it and as If-Modified-Since is
    compared with it, and never before the settings took effect (`since`)."""
    last_modified = max(changed, since).replace(microsecond=0)
    headers = {
        # Each representation has its own strong validator.
        "ETag": etag[:-1] + '-gzip"' if gzipped else etag,
        "Cache-Control": cache_control,
        "Vary": "Accept-Encoding",
        "Last-Modified": format_datetime(last_modified, usegmt=True),
        "Content-Type": content_type,
    }
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return headers, {name: value for name, value in headers.items() if name not in NOT_IN_304}, last_modified


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


async def cached(request: web.Request, key: Hashable, render: Callable[..., RenderedFeed],
                 *args: Any) -> RenderedFeed:
    """Rendered bytes from the cache, or `render(*args)` now in a worker thread."""
    cache = request.app[CACHE]
    feed = cache.entries.get(key)
    if feed is not None:  # what nearly every request finds
        cache.hits += 1
        return feed
    cache.misses += 1
    return await from_cache(cache, key, partial(render, *args))


def respond(request: web.Request, feed: RenderedFeed, cache_control: str | None = None) -> web.Response:
    """Conditional GET, gzip once per version, and the caching headers (a
    feed may be reused for feeds.max_age_seconds unless told otherwise)."""
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "") and accepts_gzip(request)
    live = request.app[LIVE]
    headers, unchanged, last_modified = answer_headers(feed, gzipped, live.since,
                                                       cache_control or live.feed_cache_control)
    if not_modified(request, (headers["ETag"], feed.etag), last_modified):
        request.app[METRICS].not_modified.inc()
        return web.Response(status=304, headers=unchanged)
    return web.Response(body=feed.gzipped if gzipped else feed.body, headers=headers)


# The overall feed of each format, made once: every request for it looks it up.
OVERALL = {fmt: FeedSpec(fmt) for fmt in FORMATS}


async def serve_feed(request: web.Request, spec: FeedSpec) -> web.StreamResponse:
    settings = settings_of(request.app)
    if request.query_string:
        limit = parse_number(request, "limit", settings.feeds_limit, settings.feeds_max_limit)
        page = parse_number(request, "page", 1, MAX_PAGE)
    else:  # what pollers ask for
        limit, page = settings.feeds_limit, 1
    feed = await cached(request, (spec, limit, page), render_feed, request.app[STORAGE], settings, spec, limit, page)
    return respond(request, feed)


async def subscriptions(request: web.Request) -> web.StreamResponse:
    render = partial(render_subscriptions, request.app[STORAGE], settings_of(request.app))
    return respond(request, await cached(request, "opml", render))


async def overall_feed(request: web.Request) -> web.StreamResponse:
    return await serve_feed(request, OVERALL[request.path.rsplit(".", 1)[1]])


async def tag_feed(request: web.Request) -> web.StreamResponse:
    spec = await canonical_spec(request, request.match_info["fmt"], request.match_info["tags"])
    return await serve_feed(request, spec)


# Pollers of a search ask for it again and again: it is read once.
read_query = functools.lru_cache(maxsize=1024)(parse_query)


def search_query(request: web.Request) -> SearchQuery | None:
    """The query of ?q=, or None when there is none; BadQuery when it cannot be read."""
    q = request.query.get("q", "")
    return read_query(q) if q.strip() else None


async def search_feed(request: web.Request) -> web.StreamResponse:
    query = search_query(request)
    if query is None:
        raise BadRequest(f"a search feed needs a query: {request.path}?q=words")
    return await serve_feed(request, FeedSpec(request.match_info["fmt"], q=query.text))


# --- pages for people --------------------------------------------------------


def feed_links(urls: Urls, title: str, tags: str = "", q: str = "") -> list[dict[str, str]]:
    """A feed in every format, for autodiscovery and links: its address, type
    and title ("News: Idlib (Atom)"). The overall feed, a tag feed, or a search's."""
    return [{"fmt": fmt, "name": FORMAT_NAMES[fmt], "type": FORMATS[fmt].split(";")[0],
             "href": urls.search_feed(fmt, q) if q else urls.feed(fmt, tags),
             "title": f"{title} ({FORMAT_NAMES[fmt]})"} for fmt in FORMATS]


def page(settings: Settings, **values: Any) -> dict[str, Any]:
    """What every page template gets."""
    return {"settings": settings, "urls": Urls(settings.base_url), "format_names": FORMAT_NAMES, **values}


PAGE_TYPE = "text/html; charset=utf-8"


async def serve_page(request: web.Request, key: Hashable,
                     make: Callable[[], tuple[str, dict[str, Any], datetime]]) -> web.StreamResponse:
    """A page for people, read and rendered in a worker thread once per data
    version and kept with the feeds; served like them (ETag, 304, gzip), but
    revalidated on every visit. `make` gives (template, its values, when what
    the page shows last changed)."""
    env = aiohttp_jinja2.get_env(request.app)

    def render() -> RenderedFeed:
        template, values, changed = make()
        return rendered(env.get_template(template).render(values).encode(), changed, PAGE_TYPE)

    return respond(request, await cached(request, ("page", key), render), "no-cache")


async def index_page(request: web.Request) -> web.StreamResponse:
    settings, storage, ingester = settings_of(request.app), request.app[STORAGE], request.app[INGESTER]
    last_scan, export_error = ingester.last_report, ingester.export_error

    def make() -> tuple[str, dict[str, Any], datetime]:
        changed = storage.data_changed_at()
        values = page(settings, title=settings.feeds_title, tags=storage.tags(), total=storage.item_count(),
                      items=storage.newest_items(settings.feeds_limit), last_scan=last_scan,
                      export_error=export_error, feeds=feed_links(Urls(settings.base_url), feed_title(settings)))
        return "index.html", values, max(changed, last_scan.finished) if last_scan else changed

    # The front page also tells of the last scan: a new one is a new page.
    return await serve_page(request, ("index", last_scan and last_scan.finished, export_error), make)


async def tag_page(request: web.Request) -> web.StreamResponse:
    settings, storage, slug = settings_of(request.app), request.app[STORAGE], request.match_info["slug"]
    tag = await from_cache(request.app[CACHE], ("tag", slug), partial(storage.find_tag, slug))
    if tag is None:
        raise NotFound(f"no tag {slug!r}")
    if tag.slug != slug:
        raise web.HTTPMovedPermanently(request.app.router["tag_page"].url_for(slug=tag.slug))

    def make() -> tuple[str, dict[str, Any], datetime]:
        title = feed_title(settings, [tag])
        values = page(settings, title=title, tag=tag, feeds=feed_links(Urls(settings.base_url), title, tag.slug),
                      items=storage.newest_items(settings.feeds_max_limit, 0, (tag.slug,)))
        return "tag.html", values, storage.data_changed_at()

    return await serve_page(request, ("tag", tag.slug), make)


async def item_page(request: web.Request) -> web.StreamResponse:
    settings, storage, key = settings_of(request.app), request.app[STORAGE], request.match_info["key"]

    def make() -> tuple[str, dict[str, Any], datetime]:
        item = storage.item(key)
        if item is None:
            raise NotFound(f"no item {key!r}")
        urls = Urls(settings.base_url)
        values = page(
            settings, title=item.title, item=item,
            # A standfirst is shown above the text; a teaser the text starts with is not.
            standfirst=item.content and item.summary and not item.content.startswith(item.summary),
            feeds=feed_links(urls, feed_title(settings))
            + [link for tag in item.tags for link in feed_links(urls, feed_title(settings, [tag]), tag.slug)])
        return "item.html", values, item.updated

    return await serve_page(request, ("item", key), make)


SORTS = ("newest", "rank")


def found_item(item: StoredItem, wanted: frozenset[str]) -> dict[str, Any]:
    """A search result as the page shows it: the title and an excerpt around
    the first match, the words looked for highlighted, all else escaped."""
    return {"item": item, "title": highlight(item.title, wanted),
            "excerpt": highlight(excerpt(item.text, wanted), wanted)}


async def search_page(request: web.Request) -> web.StreamResponse:
    settings, storage, urls = settings_of(request.app), request.app[STORAGE], Urls(settings_of(request.app).base_url)
    raw = request.query.get("q", "")
    sort = request.query.get("sort", "newest")
    if sort not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}, got {sort[:40]!r}")
    number = parse_number(request, "page", 1, MAX_PAGE)
    try:
        query = search_query(request)
    except BadQuery as error:
        values = page(settings, title=f"Search: {settings.feeds_title}", q=raw, error=str(error), feeds=[])
        return aiohttp_jinja2.render_template("search.html", request, values, status=400)
    if query is None:
        values = page(settings, title=f"Search: {settings.feeds_title}", q="", feeds=[])
        return aiohttp_jinja2.render_template("search.html", request, values)
    limit = settings.feeds_limit

    def make() -> tuple[str, dict[str, Any], datetime]:
        found = storage.search(query, limit + 1, (number - 1) * limit, by_rank=sort == "rank")
        if number > 1 and not found:
            raise NotFound(f"the search has no page {number}")
        title = feed_title(settings, q=query.text)
        links = {"sort": {other: urls.search_page(query.text, sort=other) for other in SORTS}}
        if number > 1:
            links["previous"] = urls.search_page(query.text, sort=sort, page=number - 1)
        if len(found) > limit:
            links["next"] = urls.search_page(query.text, sort=sort, page=number + 1)
        values = page(settings, title=title, q=query.text, sort=sort, number=number, links=links,
                      total=storage.search_count(query), count_cap=COUNT_CAP, start=(number - 1) * limit,
                      results=[found_item(item, query.wanted_words) for item in found[:limit]],
                      feeds=feed_links(urls, title, q=query.text))
        return "search.html", values, storage.data_changed_at()

    return await serve_page(request, ("search", query.text, sort, number), make)


# --- health, readiness, metrics ---------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    try:
        await in_thread(request.app[STORAGE].ping)
        reason = service.readiness(request.app, request.app[CLOCK]())
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
        "failed": [{"path": f.path, "status": f.status, "reason": f.reason} for f in report.files_not_read],
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


# The route table: each name's address is in urls.ROUTES.
HANDLERS: dict[str, Handler] = {
    "overall_feed": overall_feed,
    "tag_feed": tag_feed,
    "search_feed": search_feed,
    "search_page": search_page,
    "subscriptions": subscriptions,
    "healthz": healthz,
    "readyz": readyz,
    "metrics": metrics,
    "status": status,
    "index": index_page,
    "tag_page": tag_page,
    "item_page": item_page,
}
assert HANDLERS.keys() == ROUTES.keys(), "every route has a handler, every handler a route"


def make_app(settings: Settings, *, schedule: bool = True, ingest: bool = True,
             clock: Clock = utc_now) -> web.Application:
    """The service. With schedule=False nothing scans by itself (tests call
    app[INGESTER].scan()); with ingest=False it is a replica serving what
    another process ingests into the same database."""
    app = web.Application(middlewares=[errors_middleware])
    service.setup(app, settings, schedule=schedule, ingest=ingest, clock=clock)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("aggregator", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.filters["paragraphs"] = lambda text: jinja2.utils.markupsafe.Markup(text_to_html(text or ""))
    env.filters["isodate"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M UTC")
    env.filters["teaser"] = teaser_text
    for name, handler in HANDLERS.items():
        app.router.add_get(ROUTES[name], handler, name=name)
    for fmt in FORMATS:
        # The most polled addresses, also as plain routes: aiohttp finds a
        # plain path by lookup, a pattern by trying regular expressions.
        app.router.add_get(feed_path("", fmt), overall_feed)
    return app
