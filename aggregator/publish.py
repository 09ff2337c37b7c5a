"""Which feeds exist, and their rendered bytes: for the server's cache and for
the static export folder. Blocking (reads the store): run in a worker thread."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from aggregator.config import Settings
from aggregator.errors import NotFound
from aggregator.model import Tag
from aggregator.render import FORMATS, FeedInfo, feed_updated, render, tag_url
from aggregator.storage import Storage

FEED_NAMESPACE = uuid.UUID("0b7d3f0e-5a41-4c1e-8f53-2f4f8f6c9a11")


@dataclass(frozen=True)
class FeedSpec:
    """One feed: all items, or the items of one or more tags."""

    fmt: str  # "rss" or "atom"
    tags: tuple[str, ...] = ()  # slugs
    match_all: bool = False  # with several tags: items with all of them (else any)

    @property
    def name(self) -> str:
        if not self.tags:
            return "all"
        return "tags/" + ("," if self.match_all else "+").join(self.tags)

    @property
    def path(self) -> str:
        return f"/feeds/{self.name}.{self.fmt}"


@dataclass(frozen=True)
class RenderedFeed:
    body: bytes
    gzipped: bytes  # compressed once per feed version, not per request
    etag: str
    last_modified: datetime
    content_type: str


def feed_info(settings: Settings, spec: FeedSpec, tags: list[Tag], query: str = "") -> FeedInfo:
    base = settings.base_url
    if tags:
        names = (" & " if spec.match_all else " | ").join(t.name for t in tags)
        title = f"{settings.feeds_title}: {names}"
        html_url = tag_url(base, tags[0].slug) if len(tags) == 1 else f"{base}/"
    else:
        title, html_url = settings.feeds_title, f"{base}/"
    return FeedInfo(
        id=uuid.uuid5(FEED_NAMESPACE, spec.name).urn,
        title=title,
        subtitle=settings.feeds_description,
        language=settings.feeds_language,
        self_url=f"{base}{spec.path}{query}",
        html_url=html_url,
        base_url=base,
    )


def resolve_tags(storage: Storage, names: tuple[str, ...]) -> list[Tag]:
    tags = []
    for name in names:
        tag = storage.find_tag(name)
        if tag is None:
            raise NotFound(f"no tag {name!r}")
        tags.append(tag)
    return tags


def render_feed(storage: Storage, settings: Settings, spec: FeedSpec, limit: int) -> RenderedFeed:
    """The feed's bytes as served. `spec.tags` must be canonical slugs."""
    tags = resolve_tags(storage, spec.tags)
    items = storage.newest_items(limit, tag_slugs=spec.tags, match_all=spec.match_all)
    query = "" if limit == settings.feeds_limit else f"?limit={limit}"
    body = render(spec.fmt, feed_info(settings, spec, tags, query), items)
    return RenderedFeed(
        body=body,
        gzipped=gzip.compress(body, mtime=0),
        etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
        last_modified=feed_updated(items),
        content_type=FORMATS[spec.fmt],
    )


def all_feed_specs(storage: Storage) -> list[FeedSpec]:
    specs = [FeedSpec(fmt) for fmt in FORMATS]
    for tag, _count in storage.tags():
        specs.extend(FeedSpec(fmt, (tag.slug,)) for fmt in FORMATS)
    return specs


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


def export_feeds(storage: Storage, settings: Settings, folder: Path | None = None) -> list[Path]:
    """Write every feed (overall and per tag, RSS and Atom) to the folder;
    unchanged files are not rewritten."""
    folder = folder or settings.feeds_export_dir
    written = []
    for spec in all_feed_specs(storage):
        body = render_feed(storage, settings, spec, settings.feeds_limit).body
        path = folder / f"{spec.name}.{spec.fmt}"
        if not path.exists() or path.read_bytes() != body:
            write_atomic(path, body)
            written.append(path)
    return written
