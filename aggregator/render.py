"""Items → feed bytes (RSS 2.0 and Atom 1.0 through feedgen). Pure: the same
items and feed description always give the same bytes, so a feed's ETag only
changes when its data does."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from feedgen.ext.base import BaseEntryExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import __version__
from aggregator.model import StoredItem

# The date an empty feed reports as its last change: fixed, so its bytes are too.
EMPTY_FEED_UPDATED = datetime(2000, 1, 1, tzinfo=timezone.utc)

FORMATS = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
}


@dataclass(frozen=True)
class FeedInfo:
    """What a feed says about itself; URLs are absolute."""

    id: str
    title: str
    subtitle: str
    language: str
    self_url: str  # the URL this very document is served at
    html_url: str  # the page for people showing the same items
    base_url: str  # for item links: {base_url}/items/{key}


ATOM_NS = "http://www.w3.org/2005/Atom"


class RelatedLinks(BaseEntryExtension):
    """`<link rel="related">` on entries (as `atom:link` in RSS). feedgen 1.0
    drops the rel of entry links it writes itself, so these are added here."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []  # (href, title)

    def extend_ns(self) -> dict[str, str]:
        return {"atom": ATOM_NS}

    def _append(self, entry, tag: str):
        for href, title in self.links:
            etree.SubElement(entry, tag, rel="related", href=href, type="text/html", title=title)
        return entry

    def extend_atom(self, entry):
        return self._append(entry, "link")

    def extend_rss(self, item):
        return self._append(item, f"{{{ATOM_NS}}}link")


def text_to_html(text: str) -> str:
    """Plain paragraphs → escaped HTML paragraphs."""
    return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p)


def item_url(base_url: str, item: StoredItem) -> str:
    return f"{base_url}/items/{item.key}"


def tag_url(base_url: str, slug: str) -> str:
    return f"{base_url}/tags/{slug}"


def feed_updated(items: Sequence[StoredItem]) -> datetime:
    return max((item.updated for item in items), default=EMPTY_FEED_UPDATED)


def build(info: FeedInfo, items: Sequence[StoredItem]) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(info.id)
    fg.title(info.title)
    fg.subtitle(info.subtitle)
    fg.language(info.language)
    fg.link(href=info.self_url, rel="self")
    fg.link(href=info.html_url, rel="alternate", type="text/html")
    fg.generator("aggregator", version=__version__)
    updated = feed_updated(items)
    fg.updated(updated)
    fg.lastBuildDate(updated)
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(item.guid)
        entry.guid(item.guid, permalink=False)
        entry.title(item.title)
        entry.link(href=item_url(info.base_url, item), rel="alternate", type="text/html")
        if item.related:  # the same event as told elsewhere
            entry.register_extension("related", RelatedLinks)
            entry.related.links = [(f"{info.base_url}/items/{key}", title) for key, title in item.related]
        if item.content:
            entry.content(text_to_html(item.content), type="html")
        if item.summary:
            entry.summary(text_to_html(item.summary), type="html")
        for tag in item.tags:
            entry.category(term=tag.name, scheme=f"{info.base_url}/tags/", label=tag.name)
        entry.published(item.published)
        entry.updated(item.updated)
    return fg


def render(fmt: str, info: FeedInfo, items: Sequence[StoredItem]) -> bytes:
    fg = build(info, items)
    if fmt == "rss":
        return fg.rss_str(pretty=True)
    if fmt == "atom":
        return fg.atom_str(pretty=True)
    raise ValueError(f"unknown feed format {fmt!r}")
