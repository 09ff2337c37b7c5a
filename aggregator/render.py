"""Items → feed bytes (RSS 2.0 and Atom 1.0 through feedgen). Pure: the same
items and feed description always give the same bytes, so a feed's ETag only
changes when its data does."""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from aggregator import __version__
from aggregator.model import StoredItem

if TYPE_CHECKING:  # urls builds its route patterns from FORMATS below
    from aggregator.urls import Urls

FORMATS = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
# How each format is called where people read it.
FORMAT_NAMES = {"rss": "RSS", "atom": "Atom", "json": "JSON Feed"}
OPML_TYPE = "text/x-opml; charset=utf-8"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


@dataclass(frozen=True)
class FeedInfo:
    """What a feed says about itself; URLs are absolute."""

    id: str
    title: str
    subtitle: str
    language: str
    self_url: str  # the URL this very document is served at
    html_url: str  # the page for people showing the same items
    urls: Urls  # links to items and tags
    updated: datetime  # when what this document shows last changed
    author: str  # who publishes the feed: the site's title
    pages: dict[str, str] = field(default_factory=dict)  # RFC 5005: first, previous, next → URL


ATOM_NS = "http://www.w3.org/2005/Atom"


class RelatedLinks(BaseEntryExtension):
    """`<link rel="related">` on entries (as `atom:link` in RSS). feedgen 1.0
    drops the rel of entry links it writes itself, so these are added here."""

    def __init__(self) -> None:
        self.links: list[tuple[str, str]] = []  # (href, title)

    def extend_ns(self) -> dict[str, str]:
        return {}  # see PagingLinks

    def _append(self, entry, tag: str):
        for href, title in self.links:
            etree.SubElement(entry, tag, rel="related", href=href, type="text/html", title=title)
        return entry

    def extend_atom(self, entry):
        return self._append(entry, "link")

    def extend_rss(self, item):
        return self._append(item, f"{{{ATOM_NS}}}link")


class PagingLinks(BaseExtension):
    """RFC 5005 paged-feed links (first, previous, next) on the feed; in RSS
    as `atom:link`, which feedgen only writes for rel="self"."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    def extend_ns(self) -> dict[str, str]:
        # feedgen declares the Atom namespace on every RSS feed; on an Atom
        # feed it is the default one, and a second name for it ("atom:") is
        # what the W3C validator asks to avoid.
        return {}

    def extend_atom(self, feed):
        for rel, href in self.links.items():
            etree.SubElement(feed, "link", rel=rel, href=href)
        return feed

    def extend_rss(self, feed):
        channel = feed.find("channel")
        for rel, href in self.links.items():
            etree.SubElement(channel, f"{{{ATOM_NS}}}link", rel=rel, href=href)
        return feed


def text_to_html(text: str) -> str:
    """Plain paragraphs → escaped HTML paragraphs."""
    return "".join(f"<p>{html.escape(p)}</p>" for p in text.split("\n\n") if p)


# A sentence ends with one of these, perhaps inside closing quotes or brackets.
SENTENCE_ENDS = tuple(".!?…")
CLOSERS = "\"'”’»)]"


def teaser_text(summary: str) -> str:
    """The text of an item seen only as a teaser, as shown: the reader took
    the "… Read more" off it, and one that stops mid-sentence is shown cut."""
    summary = summary.rstrip()
    if not summary or summary.rstrip(CLOSERS).endswith(SENTENCE_ENDS):
        return summary
    return summary + " …"


def shown_text(item: StoredItem) -> str:
    """What an entry shows as its text: the full text, or else the teaser."""
    return item.content or teaser_text(item.summary or "")


def build(info: FeedInfo, items: Sequence[StoredItem]) -> FeedGenerator:
    fg = FeedGenerator()
    fg.id(info.id)
    fg.title(info.title)
    fg.subtitle(info.subtitle)
    fg.language(info.language)
    # Atom requires an author on the feed when its entries name none.
    fg.author(name=info.author)
    fg.link(href=info.self_url, rel="self")
    # The last link added becomes RSS <link>: the page for people.
    fg.link(href=info.html_url, rel="alternate", type="text/html")
    if info.pages:
        fg.register_extension("paging", PagingLinks, atom=True, rss=True)
        fg.paging.links = dict(info.pages)
    fg.generator("aggregator", version=__version__)
    fg.updated(info.updated)
    fg.lastBuildDate(info.updated)
    for item in items:
        entry = fg.add_entry(order="append")
        entry.id(item.guid)
        entry.guid(item.guid, permalink=False)
        entry.title(item.title)
        # The story's own address is where a reader goes; our page about it
        # (its sources, its other reports) stays linked as related.
        page = info.urls.item_page(item.key)
        entry.link(href=item.link or page, rel="alternate", type="text/html")
        related = [(page, f"{item.title} ({info.author})")] if item.link else []
        related += [(info.urls.item_page(key), title) for key, title in item.related]  # the event told elsewhere
        if related:
            entry.register_extension("related", RelatedLinks)
            entry.related.links = related
        if item.content:
            entry.content(text_to_html(item.content), type="html")
            if item.summary:
                entry.summary(text_to_html(item.summary), type="html")
        elif item.summary:
            entry.summary(text_to_html(teaser_text(item.summary)), type="html")
        for tag in item.tags:
            entry.category(term=tag.name, scheme=info.urls.tag_scheme(), label=tag.name)
        entry.published(item.published)
        entry.updated(item.updated)
    return fg


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def json_feed(info: FeedInfo, items: Sequence[StoredItem]) -> dict:
    """JSON Feed 1.1 (https://jsonfeed.org/version/1.1)."""
    feed = {
        "version": JSON_FEED_VERSION,
        "title": info.title,
        "home_page_url": info.html_url,
        "feed_url": info.self_url,
        "description": info.subtitle,
        "language": info.language,
        "items": [],
    }
    if "next" in info.pages:
        feed["next_url"] = info.pages["next"]
    for item in items:
        entry = {
            "id": item.guid,
            "url": item.link or info.urls.item_page(item.key),
            "title": item.title,
            "content_html": text_to_html(shown_text(item)),
            "date_published": _iso(item.published),
            "date_modified": _iso(item.updated),
        }
        if item.content and item.summary:
            entry["summary"] = item.summary
        if item.tags:
            entry["tags"] = [tag.name for tag in item.tags]
        extra = {}
        if item.link:
            extra["page"] = info.urls.item_page(item.key)
        if item.related:
            extra["related"] = [info.urls.item_page(key) for key, _ in item.related]
        if extra:
            entry["_aggregator"] = extra
        feed["items"].append(entry)
    return feed


def render(fmt: str, info: FeedInfo, items: Sequence[StoredItem]) -> bytes:
    if fmt == "json":
        return json.dumps(json_feed(info, items), ensure_ascii=False, indent=1).encode() + b"\n"
    fg = build(info, items)
    if fmt == "rss":
        return fg.rss_str(pretty=True)
    if fmt == "atom":
        return fg.atom_str(pretty=True)
    raise ValueError(f"unknown feed format {fmt!r}")


@dataclass(frozen=True)
class Subscription:
    title: str
    xml_url: str
    html_url: str


def render_opml(title: str, subscriptions: Sequence[Subscription]) -> bytes:
    """OPML 2.0 list of feeds, for subscribing to all of them at once."""
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = title
    body = ET.SubElement(opml, "body")
    for sub in subscriptions:
        ET.SubElement(body, "outline", type="rss", text=sub.title, title=sub.title,
                      xmlUrl=sub.xml_url, htmlUrl=sub.html_url)
    ET.indent(opml)
    return ET.tostring(opml, encoding="utf-8", xml_declaration=True) + b"\n"
