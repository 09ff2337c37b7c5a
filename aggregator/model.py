"""Frozen records passed between the stages. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple


class FileStatus(StrEnum):
    """What `aggregator sources` shows for a seed file."""

    OK = "ok"
    SKIPPED = "skipped"  # not a news page: empty, binary, no known layout
    FAILED = "failed"  # could not be read, or the store refused it
    MISSING = "missing"  # no longer in the seed folder; its items stay
    IGNORED = "ignored"  # not a page and not meant to be: a saved page's images, styles, scripts


class KeyKind(StrEnum):
    """Kinds of the keys an item is found by again (the `fingerprints` rows)."""

    TITLE = "title"
    LEAD = "lead"
    LINK = "link"  # the original address
    ENTRY = "entry"  # a feed entry's own id (guid)
    BAND0 = "band0"
    BAND1 = "band1"
    BAND2 = "band2"
    BAND3 = "band3"
    TOPIC = "topic"

    @property
    def is_band(self) -> bool:
        return self in BANDS


BANDS = (KeyKind.BAND0, KeyKind.BAND1, KeyKind.BAND2, KeyKind.BAND3)


class HasText:
    """A sighting or item with a summary and maybe a content."""

    summary: str | None
    content: str | None

    @property
    def text(self) -> str:
        """The longest text it has: what dedup compares."""
        return self.content or self.summary or ""


@dataclass(frozen=True)
class SavedSearch:
    """A search named in config.toml: in the OPML, and exported as feeds/searches/{slug}.{format}."""

    name: str
    q: str  # as parse_query reads it
    slug: str


@dataclass(frozen=True)
class Tag:
    name: str  # display name, as first seen
    slug: str  # lowercase ASCII, used in feed URLs


@dataclass(frozen=True)
class ParsedItem(HasText):
    """One news item as one page shows it.

    A teaser (listing or tag page) has only `summary`; a full article has
    `content`, and a wire article also its standfirst as `summary`."""

    title: str
    summary: str | None = None
    content: str | None = None
    published: datetime | None = None  # only when the page states a date
    tags: tuple[str, ...] = ()
    link: str | None = None  # the original address, normalised (names.canonical_link)
    entry_id: str | None = None  # a feed entry's own id: finds the entry again, never our id

    @property
    def complete(self) -> bool:
        return self.content is not None


@dataclass(frozen=True)
class Page:
    layout: str  # "listing", "tag", "article", "wire" or "feed"
    items: tuple[ParsedItem, ...]
    tag: str | None = None


@dataclass(frozen=True)
class Fingerprint:
    """Identity keys of a text; each is an indexed column in the store, so
    finding the candidates for a new item never scans all items."""

    title_key: str
    lead_key: str | None  # None when the text is too short to be told apart
    simhash: int  # 64-bit, unsigned
    bands: tuple[int, int, int, int]  # simhash split in four 16-bit bands
    topics: tuple[str, ...] = ()  # headline word pairs, to find related stories
    link_key: str | None = None  # the original address, when the sighting has one
    entry_key: str | None = None  # a feed entry's own id, when the sighting is one


@dataclass(frozen=True)
class KnownItem(HasText):
    """What dedup needs to know about an item already stored."""

    id: int
    guid: str
    title: str
    summary: str | None
    content: str | None
    published: datetime
    link: str | None = None
    tag_keys: frozenset[str] = frozenset()
    # The fingerprint keys the store found it by, and the SimHashes of the
    # texts whose bands matched (None where an older store kept none).
    keys: frozenset[tuple[str, str]] = frozenset()
    simhashes: frozenset[int | None] = frozenset()


@dataclass(frozen=True)
class PlannedItem(HasText):
    """An item as one page leaves it: new (a negative ref, the page's own
    numbering until the store gives it an id) or stored and changed."""

    ref: int
    guid: str
    title: str
    summary: str | None
    content: str | None
    published: datetime
    new_tags: tuple[str, ...] = ()  # names of the tags it gains
    link: str | None = None

    @property
    def is_new(self) -> bool:
        return self.ref < 0


@dataclass(frozen=True)
class PagePlan:
    """Everything one page changes in the store, decided before any write."""

    items: tuple[PlannedItem, ...]  # new items, and stored items whose entry changed
    sightings: tuple[tuple[int, str], ...]  # (ref, title shown) of each sighting, in page order
    fingerprints: tuple[tuple[int, Fingerprint], ...]  # (ref, keys of the text seen)
    # The fingerprint rows to store: (ref, kind, value, SimHash on band keys).
    keys: tuple[tuple[int, str, str, int | None], ...] = ()
    linking: tuple[int, ...] = ()  # positions of the sightings that changed an item
    links: tuple[tuple[int, int], ...] = ()  # pairs of refs reporting one event

    @property
    def new_items(self) -> int:
        return sum(1 for item in self.items if item.is_new)

    @property
    def updated_items(self) -> int:
        return len(self.items) - self.new_items


@dataclass(frozen=True)
class ItemUpdate:
    """New values for a stored item; None means keep the stored one."""

    title: str | None = None
    summary: str | None = None
    content: str | None = None
    published: datetime | None = None
    new_tags: tuple[str, ...] = ()
    link: str | None = None

    @property
    def changes_entry(self) -> bool:
        return any(
            v is not None for v in (self.title, self.summary, self.content, self.published, self.link)
        ) or bool(self.new_tags)


@dataclass(frozen=True)
class StoredItem(HasText):
    """An item as the feeds and pages show it."""

    guid: str
    key: str  # URL-safe form of guid
    title: str
    summary: str | None
    content: str | None
    published: datetime
    updated: datetime
    tags: tuple[Tag, ...] = ()
    sources: tuple[str, ...] = ()
    related: tuple[tuple[str, str], ...] = ()  # (key, title) of related items
    link: str | None = None  # the original address, when a source gave one


@dataclass(frozen=True)
class SourceFile:
    """What the store remembers of one seed file."""

    path: str  # relative to the seed folder, with "/" separators
    size: int
    mtime_ns: int
    sha256: str
    status: FileStatus
    reason: str | None
    item_count: int
    checked_at: datetime | None = None


# Files read again even when they look unchanged.
UNSETTLED = (FileStatus.FAILED, FileStatus.MISSING)


class FileState(NamedTuple):
    """What a scan knows of a changed seed file from its last read."""

    size: int
    status: str  # a FileStatus, as read from the store
    sha256: str  # of the bytes last read; "" when none were

    @property
    def settled(self) -> bool:
        """Was the file read as it is? One that could not be read is tried
        again, and one that was gone and came back is read again, so its
        status is its own once more."""
        return self.status not in UNSETTLED


class FolderState(NamedTuple):
    """What a rescan compares the listing with: an unchanged file costs it
    one set lookup of its (path, size, mtime), on a rescan of tens of
    thousands of files."""

    settled: set[tuple[str, int, int]]  # (path, size, mtime_ns) of every file read as it is
    listed: set[str]  # every path not marked missing


@dataclass(frozen=True)
class FileResult:
    path: str
    status: FileStatus
    reason: str | None = None
    new_items: int = 0
    updated_items: int = 0
    parsed_items: int = 0
    mtime: float | None = None  # the file's modification time, seconds since the epoch


@dataclass(frozen=True)
class ScanReport:
    started: datetime
    finished: datetime
    files_seen: int
    files: tuple[FileResult, ...] = field(default=())  # only the files read this scan
    missing: int = 0
    deferred: int = 0  # files still being written, left for the next scan

    @property
    def files_changed(self) -> int:
        return len(self.files)

    @property
    def files_not_read(self) -> tuple[FileResult, ...]:
        """Files that gave no items: skipped (not a news page, too large, not a
        regular file) or failed (unreadable, or the store refused them)."""
        return tuple(f for f in self.files if f.status not in (FileStatus.OK, FileStatus.IGNORED))

    @property
    def not_read_counts(self) -> str:
        """"2 skipped, 0 failed": a page that is not news did not fail."""
        skipped = sum(f.status == FileStatus.SKIPPED for f in self.files)
        return f"{skipped} skipped, {len(self.files_not_read) - skipped} failed"

    @property
    def new_items(self) -> int:
        return sum(f.new_items for f in self.files)

    @property
    def updated_items(self) -> int:
        return sum(f.updated_items for f in self.files)

    @property
    def changed_data(self) -> bool:
        return self.new_items > 0 or self.updated_items > 0

    @property
    def seconds(self) -> float:
        return (self.finished - self.started).total_seconds()
