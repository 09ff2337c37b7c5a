"""Every kind of page people save → the same records (`Page` of
`ParsedItem`). One module per kind; dedup, storage and rendering never ask
which kind an item came from. Adding a kind is adding a module here, a line
in READERS and a folder of cases in tests/data.

    text   plain text in four layouts (listing, tag page, article, wire copy),
           with a browser's menus and footers around them or not
    html   pages saved from a browser: article, listing, tag page
    feed   RSS 0.9x/1.0/2.0, Atom 1.0, JSON Feed 1.0/1.1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath

from aggregator.errors import SeedError
from aggregator.model import Page, ParsedItem
from aggregator.names import clean_tags
from aggregator.read.feed import is_json_feed, read_feed
from aggregator.read.html import read_html
from aggregator.read.text import read_text
from aggregator.seeds import BOMS


class Kind(StrEnum):
    TEXT = "text"
    HTML = "html"
    FEED = "feed"


HTML_SUFFIXES = frozenset({".html", ".htm", ".xhtml", ".shtml"})
FEED_SUFFIXES = frozenset({".xml", ".rss", ".atom", ".rdf", ".json", ".feed"})
SNIFF_BYTES = 2048
# An item's text at most: a long feature is 100 000 characters; past this a
# feed entry would carry megabytes to every poller.
MAX_TEXT_CHARS = 200_000
MAX_TITLE_CHARS = 1_000
BOM_STARTS = tuple(bom for bom, _ in BOMS)


def _opening(data: bytes) -> str:
    """The start of a file, lowercased, as far as telling its kind needs."""
    head = data[:SNIFF_BYTES]
    for bom, encoding in BOMS:
        if head.startswith(bom):
            return head.decode(encoding, errors="ignore").lstrip().lower()
    return head.decode("latin-1").lstrip().lower()  # every byte a character: markup is ASCII


def kind_of(name: str, data: bytes) -> Kind:
    """The kind of a seed file: by its content (what a browser's sniffer looks
    at: the doctype, the root element, a JSON Feed's version), with the name
    as a hint where the content does not say."""
    suffix = PurePosixPath(name).suffix.lower()
    first = data[:SNIFF_BYTES].lstrip()[:1]
    if first not in (b"<", b"{") and suffix not in HTML_SUFFIXES and not data.startswith(BOM_STARTS):
        return Kind.TEXT  # most seed files: told at the first character
    opening = _opening(data)
    if opening.startswith(("<!doctype html", "<html")):
        return Kind.HTML
    if opening.startswith("<"):
        for root in ("<rss", "<feed", "<rdf:rdf", "<channel"):
            if root in opening:
                return Kind.FEED
        if "<html" in opening or "<!doctype html" in opening or suffix in HTML_SUFFIXES:
            return Kind.HTML
    if opening.startswith("{") and is_json_feed(data):
        return Kind.FEED
    if suffix in HTML_SUFFIXES:
        return Kind.HTML
    if suffix in FEED_SUFFIXES and opening.startswith(("<", "{")):
        return Kind.FEED
    return Kind.TEXT


READERS: dict[Kind, Callable[[bytes, datetime], Page]] = {
    Kind.TEXT: read_text,
    Kind.HTML: lambda data, _mtime: read_html(data),
    Kind.FEED: lambda data, _mtime: read_feed(data),
}


def read_page(data: bytes, mtime: datetime, name: str = "") -> Page:
    """A seed file's bytes → Page; SeedError says why there is none. `mtime`
    dates wire copy that gives no year; `name` hints at the kind."""
    if not data.strip():
        raise SeedError("empty file: no text")
    page = READERS[kind_of(name, data)](data, mtime)
    return replace(page, items=tuple(bounded(item) for item in page.items))


def bounded(item: ParsedItem) -> ParsedItem:
    """What every reader's items hold: tags that can be shown (see
    names.clean_tag), a title no longer than MAX_TITLE_CHARS and texts no
    longer than MAX_TEXT_CHARS, cut at a paragraph where there is one."""
    return replace(item, title=item.title[:MAX_TITLE_CHARS], tags=clean_tags(item.tags),
                   summary=cut(item.summary), content=cut(item.content))


def cut(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_TEXT_CHARS:
        return text
    head = text[:MAX_TEXT_CHARS]
    end = head.rfind("\n\n")
    return head[:end] if end > MAX_TEXT_CHARS // 2 else head
