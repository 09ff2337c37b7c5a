"""Feed files → Page: RSS 0.9x/1.0/2.0 and Atom through feedparser, JSON
Feed 1.0/1.1 from its JSON. Every entry is one sighting; its own id is kept
only as a source detail, never as our item id."""

from __future__ import annotations

import calendar
import json
from datetime import datetime, timezone

import feedparser

from aggregator.errors import SeedError, first_line
from aggregator.model import Page, ParsedItem
from aggregator.names import canonical_link
from aggregator.read.html import fragment_text, moment
from aggregator.read.text import clean_text

JSON_FEED_VERSIONS = ("https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1")


def is_json_feed(data: bytes) -> bool:
    try:
        document = json.loads(data)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("version") in JSON_FEED_VERSIONS


def _line(text: str | None) -> str:
    return " ".join(clean_text(text or "").split())


def _text(html_or_text: str | None) -> str | None:
    """An entry's HTML (or plain) text as paragraphs; None when empty."""
    text = fragment_text(html_or_text or "")
    return text or None


def _entry(title: str, link: str | None, summary: str | None, content: str | None,
           published: datetime | None, tags: list[str], entry_id: str | None = None) -> ParsedItem | None:
    title = _line(title)
    summary, content = _text(summary), _text(content)
    if content and summary and (content == summary or content.startswith(summary)):
        summary = None  # a description that is the content's start adds nothing
    if not title or not (summary or content):
        return None
    return ParsedItem(title=title, summary=summary, content=content, published=published,
                      tags=tuple(dict.fromkeys(tag for tag in map(_line, tags) if tag)),
                      link=canonical_link(link or ""), entry_id=entry_id)


def scoped_id(feed: object, entry: object) -> str | None:
    """An entry's own id within its feed's: "1" in one feed is not "1" in another."""
    if not entry:
        return None
    return f"{_line(str(feed or ''))} {_line(str(entry))}"


def _struct_time(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=timezone.utc) if value else None
    except (OverflowError, ValueError, OSError):  # a date no calendar has
        return None


def _string(value: object) -> str | None:
    """A JSON Feed field as text: anything but a string counts as absent."""
    return value if isinstance(value, str) else None





def read_xml_feed(data: bytes) -> Page:
    parsed = feedparser.parse(data)
    if not parsed.get("version") and not parsed.entries:
        problem = parsed.get("bozo_exception")
        raise SeedError(f"not a feed feedparser can read: {first_line(problem) if problem else 'no entries'}")
    feed = parsed.feed
    items = []
    for entry in parsed.entries:
        content = entry.get("content") or []
        item = _entry(
            entry.get("title", ""), entry.get("link"), entry.get("summary"),
            "\n".join(part.get("value", "") for part in content) or None,
            _struct_time(entry.get("published_parsed") or entry.get("updated_parsed")),
            [tag.get("label") or tag.get("term") or "" for tag in entry.get("tags", [])],
            scoped_id(feed.get("id") or feed.get("link") or feed.get("title"), entry.get("id")))
        if item is not None:
            items.append(item)
    if not items:
        raise SeedError("feed holds no entries with a title and text")
    return Page(layout="feed", items=tuple(items))


def read_json_feed(data: bytes) -> Page:
    document = json.loads(data)
    scope = document.get("feed_url") or document.get("home_page_url") or document.get("title")
    items = []
    for entry in document.get("items") if isinstance(document.get("items"), list) else []:
        if not isinstance(entry, dict):
            continue
        tags = entry.get("tags") if isinstance(entry.get("tags"), list) else []
        item = _entry(_string(entry.get("title")) or "",
                      _string(entry.get("url")) or _string(entry.get("external_url")),
                      _string(entry.get("summary")),
                      _string(entry.get("content_html")) or _string(entry.get("content_text")),
                      moment(entry.get("date_published") or entry.get("date_modified")),
                      [tag for tag in tags if isinstance(tag, str)], scoped_id(scope, entry.get("id")))
        if item is not None:
            items.append(item)
    if not items:
        raise SeedError("JSON Feed holds no items with a title and text")
    return Page(layout="feed", items=tuple(items))


def read_feed(data: bytes) -> Page:
    try:
        return read_json_feed(data) if is_json_feed(data) else read_xml_feed(data)
    except (ValueError, TypeError, RecursionError) as error:  # a hostile file
        raise SeedError(f"feed that cannot be read: {first_line(error)}") from None
