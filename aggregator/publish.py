"""Which feeds exist, and their rendered bytes: for the server's cache and for
the static export folder. Blocking (reads the store): run in a worker thread."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

from aggregator.config import Settings
from aggregator.errors import BadRequest, NotFound
from aggregator.model import Tag
from aggregator.render import (
    FORMATS,
    OPML_TYPE,
    FeedInfo,
    Subscription,
    render,
    render_opml,
)
from aggregator.search import parse_query
from aggregator.storage import Storage
from aggregator.urls import QUERY_SAFE, Urls, feed_path, path

MAX_TAGS_PER_FEED = 20
FEED_NAMESPACE = uuid.UUID("0b7d3f0e-5a41-4c1e-8f53-2f4f8f6c9a11")


@dataclass(frozen=True)
class FeedSpec:
    """One feed: all items, the items of one or more tags, or those a search finds."""

    fmt: str  # "rss", "atom" or "json"
    tags: tuple[str, ...] = ()  # slugs
    match_all: bool = False  # with several tags: items with all of them (else any)
    q: str = ""  # a search query, as parse_query reads it
    # A saved search's file name in the export folder. Not part of the feed:
    # served at its query's address, a saved search is that feed, and shares its cache.
    saved_as: str = field(default="", compare=False)

    @property
    def joined_tags(self) -> str:
        return ("," if self.match_all else "+").join(self.tags)

    @property
    def name(self) -> str:
        """Its name in the export folder."""
        if self.q:
            return "searches/" + self.saved_as
        return "tags/" + self.joined_tags if self.tags else "all"

    @property
    def identity(self) -> str:
        """What its id is made from: a search is its query, wherever it is written
        (encoded as it always was: the id of a feed never changes)."""
        return "search?" + urlencode({"q": self.q}) if self.q else self.name

    @functools.cached_property
    def path(self) -> str:
        # Asked of every request for a tag feed: made once per spec.
        return path("search_feed", fmt=self.fmt) if self.q else feed_path(self.joined_tags, self.fmt)


@dataclass(frozen=True, eq=False)  # one object per render: compared and hashed by identity, not by its bytes
class RenderedFeed:
    body: bytes
    gzipped: bytes  # compressed once per feed version, not per request
    etag: str
    last_modified: datetime
    content_type: str


def feed_query(settings: Settings, limit: int, page: int, q: str = "") -> str:
    """The query string of one page of a feed; empty for the default first page of a feed that is no search."""
    params: dict[str, object] = {"q": q} if q else {}
    if limit != settings.feeds_limit:
        params["limit"] = limit
    if page > 1:
        params["page"] = page
    return "?" + urlencode(params, safe=QUERY_SAFE) if params else ""


def feed_title(settings: Settings, tags: Sequence[Tag] = (), match_all: bool = False, q: str = "") -> str:
    """"News: Idlib" for a tag's feed; "News: Idlib | Assad" for either tag; "News: “idlib -assad”" for a search."""
    if q:
        return f"{settings.feeds_title}: “{q}”"
    if not tags:
        return settings.feeds_title
    return f"{settings.feeds_title}: " + (" & " if match_all else " | ").join(t.name for t in tags)


def feed_info(settings: Settings, spec: FeedSpec, tags: list[Tag], updated: datetime, limit: int | None = None,
              page: int = 1, has_next: bool = False) -> FeedInfo:
    urls = Urls(settings.base_url)
    limit = limit or settings.feeds_limit
    title = feed_title(settings, tags, spec.match_all, spec.q)
    html_url = urls.index()
    if spec.q:
        html_url = urls.search_page(spec.q)
    elif len(tags) == 1:
        html_url = urls.tag_page(tags[0].slug)
    url = urls.base + spec.path
    pages = {}
    if page > 1 or has_next:  # RFC 5005 paged feed: newest first, "next" is older
        pages["first"] = url + feed_query(settings, limit, 1, spec.q)
    if page > 1:
        pages["previous"] = url + feed_query(settings, limit, page - 1, spec.q)
    if has_next:
        pages["next"] = url + feed_query(settings, limit, page + 1, spec.q)
    return FeedInfo(
        id=uuid.uuid5(FEED_NAMESPACE, spec.identity).urn,
        title=title,
        subtitle=settings.feeds_description,
        language=settings.feeds_language,
        self_url=url + feed_query(settings, limit, page, spec.q),
        html_url=html_url,
        urls=urls,
        updated=updated,
        author=settings.feeds_title,
        pages=pages,
    )


def resolve_tags(storage: Storage, names: tuple[str, ...]) -> list[Tag]:
    tags = []
    for name in names:
        tag = storage.find_tag(name)
        if tag is None:
            raise NotFound(f"no tag {name!r}")
        tags.append(tag)
    return tags


def split_tags(raw: str) -> tuple[tuple[str, ...], bool]:
    """"a,b" → items with all of the tags; "a+b" → with any of them."""
    if "," in raw:
        return tuple(raw.split(",")), True
    return tuple(raw.split("+")), False


def resolve_spec(storage: Storage, fmt: str, raw_tags: str) -> FeedSpec:
    """The feed a tag address asks for, by tag slugs, whatever names or case
    it was given in. NotFound for a tag the store does not have."""
    names, match_all = split_tags(raw_tags)
    if len(names) > MAX_TAGS_PER_FEED:  # refused before any read of the store
        raise BadRequest(f"a feed combines at most {MAX_TAGS_PER_FEED} tags, got {len(names)}")
    if len(names) > 1 and storage.find_tag(raw_tags):
        names, match_all = (raw_tags,), False  # a tag whose name holds "+" or ","
    # One address per feed: "idlib+assad", "assad+idlib" and "assad+idlib+assad"
    # are one feed, and pollers of each share its cache.
    slugs = tuple(sorted({tag.slug for tag in resolve_tags(storage, names)}))
    return FeedSpec(fmt, slugs, match_all and len(slugs) > 1)


def rendered(body: bytes, last_modified: datetime, content_type: str) -> RenderedFeed:
    return RenderedFeed(
        body=body,
        gzipped=gzip.compress(body, mtime=0),
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=last_modified,
        content_type=content_type,
    )


def render_feed(storage: Storage, settings: Settings, spec: FeedSpec, limit: int,
                page: int = 1) -> RenderedFeed:
    """One page of a feed as served. `spec.tags` must be canonical slugs."""
    tags = resolve_tags(storage, spec.tags)
    if spec.q:
        items = storage.search(parse_query(spec.q), limit + 1, (page - 1) * limit)
    else:
        items = storage.newest_items(limit + 1, (page - 1) * limit, spec.tags, spec.match_all)
    has_next, items = len(items) > limit, items[:limit]
    if page > 1 and not items:
        raise NotFound(f"{spec.path} has no page {page}")
    if spec.q:
        # Any change to any item may add a match or take one away.
        updated = storage.data_changed_at()
    elif page > 1:
        updated = storage.changed_through(page * limit, spec.tags, spec.match_all)
    else:
        updated = max((item.updated for item in items), default=None)
    updated = updated or storage.data_changed_at()  # an empty feed: when the data last changed
    info = feed_info(settings, spec, tags, updated, limit, page, has_next)
    return rendered(render(spec.fmt, info, items), updated, FORMATS[spec.fmt])


def render_subscriptions(storage: Storage, settings: Settings) -> RenderedFeed:
    """OPML of the overall feed and every tag feed (Atom)."""
    urls = Urls(settings.base_url)
    subs = [Subscription(feed_title(settings), urls.feed("atom"), urls.index())]
    for tag, _count in storage.tags():
        subs.append(Subscription(feed_title(settings, [tag]),
                                 urls.feed("atom", tag.slug), urls.tag_page(tag.slug)))
    for saved in settings.searches:
        subs.append(Subscription(f"{settings.feeds_title}: {saved.name}",
                                 urls.search_feed("atom", saved.q), urls.search_page(saved.q)))
    return rendered(render_opml(settings.feeds_title, subs), storage.data_changed_at(), OPML_TYPE)


def saved_search_specs(settings: Settings) -> list[FeedSpec]:
    return [FeedSpec(fmt, q=saved.q, saved_as=saved.slug) for saved in settings.searches for fmt in FORMATS]


def all_feed_specs(storage: Storage, settings: Settings) -> list[FeedSpec]:
    specs = [FeedSpec(fmt) for fmt in FORMATS]
    for tag, _count in storage.tags():
        specs.extend(FeedSpec(fmt, (tag.slug,)) for fmt in FORMATS)
    return specs + saved_search_specs(settings)


def write_atomic(path: Path, data: bytes) -> None:
    """Readers of the folder see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_all(storage: Storage, settings: Settings, tag_slugs: Iterable[str] | None = None
               ) -> dict[FeedSpec, RenderedFeed]:
    """Every feed (overall, per tag and per saved search, each format) as
    served by default; or, given tag slugs, the overall feeds, the feeds of
    those tags and the saved searches (any change may change what they find)."""
    if tag_slugs is None:
        specs = all_feed_specs(storage, settings)
    else:
        specs = [FeedSpec(fmt, tags) for tags in [(), *((slug,) for slug in sorted(tag_slugs))] for fmt in FORMATS]
        specs += saved_search_specs(settings)
    return {spec: render_feed(storage, settings, spec, settings.feeds_limit) for spec in specs}


def write_feeds(feeds: dict[FeedSpec, RenderedFeed], folder: Path) -> list[Path]:
    """Write the feeds to the folder; unchanged files are not rewritten."""
    # A process killed while writing leaves its temporary file: never a
    # feed (the rename did not happen), so it goes.
    for stale in folder.glob("**/.*.tmp"):
        stale.unlink(missing_ok=True)
    written = []
    for spec, feed in feeds.items():
        path = folder / f"{spec.name}.{spec.fmt}"
        if not path.exists() or path.read_bytes() != feed.body:
            write_atomic(path, feed.body)
            written.append(path)
    return written


def export_feeds(storage: Storage, settings: Settings, folder: Path | None = None) -> tuple[list[Path], int]:
    """Every feed written to the folder: (the files that changed, the number of feeds)."""
    feeds = render_all(storage, settings)
    return write_feeds(feeds, folder or settings.feeds_export_dir), len(feeds)
