"""The store. The only module that talks to SQLAlchemy; everything else sees
the records of aggregator.model. SQLite by default, or PostgreSQL: nothing
below is specific to one of them except the SQLite connection set-up and the
insert-if-not-there statement each spells its own way.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    create_engine,
    event,
    exists,
    bindparam,
    func,
    insert,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.selectable import Subquery
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    relationship,
    selectinload,
    sessionmaker,
)

from aggregator.dedupe import (
    MAX_RELATED_CANDIDATES,
    guid_key,
    headlines_related,
    identity_keys,
    is_close,
    related_ids,
    tag_key,
    tag_slug,
    topic_index_keys,
)
from aggregator.errors import StorageError
from aggregator.model import (
    FileState,
    Fingerprint,
    KnownItem,
    PagePlan,
    PlannedItem,
    SourceFile,
    StoredItem,
    Tag,
)

log = logging.getLogger(__name__)

# Candidate lookups read at most this many items (the newest) per key, so
# their cost does not grow with the store.
MAX_ITEMS_PER_KEY = 50
MAX_ITEMS_PER_TOPIC = 10
KEYS_PER_QUERY = 200  # SQLite allows 500 terms in one compound SELECT


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every database (SQLite keeps no time zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


# An item's `published` is copied here, so a tag feed reads its newest items
# as one index range, whatever the number of items the tag has: without it,
# every item of the tag would be read and sorted for each first render.
item_tags = Table(
    "item_tags",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Column("published", UTCDateTime, nullable=False),
)
# In feed order (newest first, then the earlier stored) so the range is read forwards.
Index("ix_item_tags_newest", item_tags.c.tag_id, item_tags.c.published.desc(), item_tags.c.item_id)

item_sources = Table(
    "item_sources",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_item_sources_source", "source_id", "item_id"),
)


# Where each item was seen: one row per item on a page, rewritten when the
# page changes. Lets `aggregator eval` compare the grouping with a labelled one.
sightings = Table(
    "sightings",
    Base.metadata,
    Column("source_id", ForeignKey("sources.id", ondelete="CASCADE"), primary_key=True),
    Column("position", Integer, primary_key=True),
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
    Column("title", Text, nullable=False),
    Index("ix_sightings_item", "item_id"),
)

item_links = Table(
    "item_links",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("related_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
)


class ItemRow(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    guid: Mapped[str] = mapped_column(String(200), unique=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)
    content: Mapped[str | None] = mapped_column(Text)
    published: Mapped[datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)
    first_seen: Mapped[datetime] = mapped_column(UTCDateTime)

    tags: Mapped[list[TagRow]] = relationship(secondary=item_tags, order_by="TagRow.id")
    sources: Mapped[list[SourceRow]] = relationship(secondary=item_sources, order_by="SourceRow.path")
    related: Mapped[list[ItemRow]] = relationship(
        secondary=item_links,
        primaryjoin="ItemRow.id == item_links.c.item_id",
        secondaryjoin="ItemRow.id == item_links.c.related_id",
        order_by="ItemRow.id",
        viewonly=True,
    )

    __table_args__ = (Index("ix_items_newest", "published", "id"),)


class FingerprintRow(Base):
    """Identity keys of every sighting of an item (title, opening words,
    SimHash bands). An item keeps the keys of all the texts and titles it was
    seen with, so a later copy of any of them finds it."""

    __tablename__ = "fingerprints"

    # The key is the row: a lookup by (kind, value) reads item ids and
    # SimHashes from one B-tree, with no second read per row (on SQLite the
    # table has no rowid; PostgreSQL carries the SimHash in the index).
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)
    value: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    # On SimHash band keys, the whole SimHash of the text (signed 64-bit):
    # tells a close text from one that shares a band by chance.
    simhash: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        PrimaryKeyConstraint("kind", "value", "item_id", name="pk_fingerprints",
                             postgresql_include=["simhash"]),
        Index("ix_fingerprints_item", "item_id"),
        {"sqlite_with_rowid": False},
    )


class TagRow(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)


class SourceRow(Base):
    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(1000), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


items_table = ItemRow.__table__
fingerprints_table = FingerprintRow.__table__
tags_table = TagRow.__table__
sources_table = SourceRow.__table__


class StateRow(Base):
    """Counters of the store. `data_version` goes up with every ingest that
    changed what the feeds show: servers that do not ingest themselves
    (replicas) watch it to know when to drop their cached feeds."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


# The writer checkpoints itself past this many log pages (200 MB): only a
# checkpoint with nothing written after it lets the log start over, and while
# an ingest runs that is the writer's own. A log that grows slows every read a
# little, so the limit is not larger.
WAL_PAGES_MAX = 50_000
WAL_BYTES_KEPT = 64 * 1024 * 1024  # what a log shrinks back to when it starts over
CHECKPOINT_SECONDS = 1.0


class Checkpointer:
    """Copies an SQLite store's write-ahead log back into the database file on
    a thread of its own. Done by the writing thread, a checkpoint waits for
    the disk to write back every index page the log holds, and at a million
    items those lie all over the file: a quarter of the ingest's time went
    there. Here the ingest goes on writing while the disk works, and the
    writer's own checkpoints find most pages already copied. PASSIVE: it never
    waits for, nor blocks, a reader or the writer."""

    def __init__(self, engine: Engine, seconds: float = CHECKPOINT_SECONDS):
        self._engine = engine
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            try:
                with self._engine.connect() as connection:
                    connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()
            except SQLAlchemyError as error:  # the writer's own checkpoints still bound the log
                log.warning("WAL checkpoint failed: %s", str(getattr(error, "orig", error)).splitlines()[0])

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the server read while the ingester writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    # Ingest writes keys all over large indexes: a bigger page cache helps, and
    # the log is copied back into the file mostly by the Checkpointer's thread.
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_PAGES_MAX}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_BYTES_KEPT}")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StorageError(f"database url {url!r} is not a valid SQLAlchemy URL") from error
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StorageError(f"database url {url!r}: the store runs on sqlite or postgresql")
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _sqlite_pragmas)
    return engine


# What a feed or page shows of an item, loaded in three queries for any number of items.
WHOLE_ITEM = (selectinload(ItemRow.tags), selectinload(ItemRow.sources), selectinload(ItemRow.related))


def _tag(row: TagRow) -> Tag:
    return Tag(name=row.name, slug=row.slug)


def _stored(row: ItemRow) -> StoredItem:
    return StoredItem(
        guid=row.guid,
        key=row.key,
        title=row.title,
        summary=row.summary,
        content=row.content,
        published=row.published,
        updated=row.updated,
        tags=tuple(_tag(t) for t in row.tags),
        sources=tuple(s.path for s in row.sources),
        related=tuple((r.key, r.title) for r in row.related),
    )


def _signed(value: int) -> int:
    """A 64-bit SimHash as the signed BIGINT every database has."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int | None) -> int | None:
    return None if value is None else value & ((1 << 64) - 1)


@functools.lru_cache(maxsize=KEYS_PER_QUERY)
def _newest_per_key(count: int) -> TextClause:
    """One index range read per key, bounded by its LIMIT, for `count` keys.
    Written as SQL text because every database reads it the same way and
    building it as an expression tree on each call cost more than running it."""
    part = ("SELECT * FROM (SELECT kind, value, item_id, simhash FROM fingerprints "
            "WHERE kind = :k{n} AND value = :v{n} ORDER BY item_id DESC LIMIT :per_key) AS p{n}")
    return text(" UNION ALL ".join(part.format(n=n) for n in range(count)))


def _tagged_page(slugs: Sequence[str], match_all: bool, limit: int, offset: int) -> Subquery:
    """(item_id, published) of one page of the items carrying any (or all) of
    the tags, in feed order. Each tag is read along its index in feed order
    and no further than the page needs; for all of them, the first tag's
    items are read in order and kept if they carry the others."""
    tagged = item_tags.c

    def newest(slug: str):
        return (select(tagged.item_id, tagged.published)
                .where(tagged.tag_id == select(tags_table.c.id).where(tags_table.c.slug == slug).scalar_subquery())
                .order_by(tagged.published.desc(), tagged.item_id))

    if match_all or len(slugs) == 1:
        first, *others = slugs
        query = newest(first)
        for slug in others:
            other = item_tags.alias()
            query = query.where(exists().where(
                other.c.item_id == tagged.item_id,
                other.c.tag_id == select(tags_table.c.id).where(tags_table.c.slug == slug).scalar_subquery()))
        return query.limit(limit).offset(offset).subquery()
    # Any of them: the page lies within the first limit + offset of each tag.
    parts = [newest(slug).limit(limit + offset).subquery() for slug in slugs]
    either = union(*(select(part.c.item_id, part.c.published) for part in parts)).subquery()
    return (select(either.c.item_id, either.c.published)
            .order_by(either.c.published.desc(), either.c.item_id)
            .limit(limit).offset(offset).subquery())


def _by_item(rows) -> dict[int, tuple[set[tuple[str, str]], set[int | None]]]:
    """Fingerprint rows grouped by item: (its keys found, SimHashes of its band keys)."""
    found: dict[int, tuple[set[tuple[str, str]], set[int | None]]] = {}
    for kind, value, item_id, simhash in rows:
        entry = found.get(item_id)
        if entry is None:  # not setdefault: it would build two sets for every row
            entry = found[item_id] = (set(), set())
        keys, simhashes = entry
        keys.add((kind, value))
        if kind.startswith("band"):
            simhashes.add(_unsigned(simhash))
    return found


class Writer:
    """Writes of one ingest transaction (one seed file). A page costs a fixed
    handful of statements whatever its number of items: one query finds the
    candidates for all its items, another the related stories, and rows are
    written many at a time."""

    def __init__(self, connection: Connection, now: datetime):
        self.connection = connection
        self.now = now
        self.changed = False  # anything a feed shows

    # --- reading what a page needs -------------------------------------------

    def _matching(self, keys: set[tuple[str, str]], per_key: int) -> list[tuple[str, str, int, int | None]]:
        """(kind, value, item id, simhash) rows sharing any of the keys, at most
        the `per_key` newest items per key: a key common to thousands of items
        (a stock headline, a chance SimHash band) costs no more than a rare one."""
        rows: list[tuple[str, str, int, int | None]] = []
        ordered = sorted(keys)
        for start in range(0, len(ordered), KEYS_PER_QUERY):
            chunk = ordered[start : start + KEYS_PER_QUERY]
            params: dict[str, object] = {"per_key": per_key}
            for n, (kind, value) in enumerate(chunk):
                params[f"k{n}"], params[f"v{n}"] = kind, value
            rows.extend(self.connection.execute(_newest_per_key(len(chunk)), params).all())
        return rows

    def candidates(self, fps: Sequence[Fingerprint]) -> dict[int, KnownItem]:
        """Stored items that may be one of the fingerprinted texts, by id."""
        by_key: dict[tuple[str, str], list[Fingerprint]] = {}
        for fp in fps:
            for key in identity_keys(fp):
                by_key.setdefault(key, []).append(fp)
        # A band shared with a distant text is chance, more common the larger
        # the store: such rows are dropped as they are read. Every item left
        # shares a title or opening words with one of the texts, or a band
        # with one close to it: a candidate (`is_candidate`) for that text.
        rows = [row for row in self._matching(set(by_key), MAX_ITEMS_PER_KEY)
                if not row[0].startswith("band")
                or any(is_close(fp, _unsigned(row[3])) for fp in by_key[row[0], row[1]])]
        found = _by_item(rows)
        wanted = list(found)
        if not wanted:
            return {}
        tag_keys: dict[int, set[str]] = {}
        for item_id, key in self.connection.execute(
            select(item_tags.c.item_id, tags_table.c.key)
            .join(tags_table, tags_table.c.id == item_tags.c.tag_id)
            .where(item_tags.c.item_id.in_(wanted))
        ):
            tag_keys.setdefault(item_id, set()).add(key)
        return {row.id: KnownItem(*row, tag_keys=frozenset(tag_keys.get(row.id, ())),
                                  keys=frozenset(found[row.id][0]),
                                  simhashes=frozenset(found[row.id][1]))
                for row in self._known_rows(wanted)}

    def related_candidates(self, sightings: Sequence[tuple[str, Fingerprint]]) -> list[KnownItem]:
        """For each (headline, fingerprint), the stored items whose headlines
        share the most topic-word pairs with it (one more than needed: one may
        be itself), of those the ones whose headlines are related at all."""
        keys = {("topic", key) for _, fp in sightings for key in fp.topics}
        rows = self._matching(keys, MAX_ITEMS_PER_TOPIC)
        holders: dict[str, set[int]] = {}
        for _, value, item_id, _ in rows:
            holders.setdefault(value, set()).add(item_id)
        wanted: dict[int, set[str]] = {}  # item id → the headlines that found it
        for title, fp in sightings:
            for item_id in related_ids(fp, holders, limit=MAX_RELATED_CANDIDATES + 1):
                wanted.setdefault(item_id, set()).add(title)
        if not wanted:
            return []
        items = items_table.c
        # Headlines first: most candidates stop there, without reading their text.
        titles = self.connection.execute(select(items.id, items.title).where(items.id.in_(wanted))).all()
        close = [item_id for item_id, stored in titles
                 if any(headlines_related(title, stored) for title in wanted[item_id])]
        if not close:
            return []
        topics: dict[int, set[tuple[str, str]]] = {item_id: set() for item_id in close}
        for kind, value, item_id, _ in rows:
            if item_id in topics:
                topics[item_id].add((kind, value))
        return [KnownItem(*row, keys=frozenset(topics[row.id])) for row in self._known_rows(close)]

    def _known_rows(self, ids: Sequence[int]):
        """(id, guid, title, summary, content, published) of the items: what
        KnownItem takes before the keys."""
        items = items_table.c
        return self.connection.execute(
            select(items.id, items.guid, items.title, items.summary, items.content, items.published)
            .where(items.id.in_(ids)))

    def taken_guids(self, guids: Sequence[str]) -> set[str]:
        if not guids:
            return set()
        return set(self.connection.scalars(select(items_table.c.guid).where(items_table.c.guid.in_(guids))))

    # --- writing ---------------------------------------------------------------

    def source(self, path: str, size: int, mtime_ns: int, sha256: str, status: str,
               reason: str | None, item_count: int) -> int:
        """Record what was read of a seed file; its id."""
        values = {"size": size, "mtime_ns": mtime_ns, "sha256": sha256, "status": status,
                  "reason": reason, "item_count": item_count, "checked_at": self.now}
        table = sources_table
        source_id = self.connection.scalar(select(table.c.id).where(table.c.path == path))
        if source_id is None:
            return self.connection.scalar(insert(table).values(path=path, **values).returning(table.c.id))
        self.connection.execute(update(table).where(table.c.id == source_id).values(**values))
        return source_id

    def _insert_new(self, table: Table, rows: list[dict]) -> None:
        """Insert the rows not there yet: the database, not a lookup, decides."""
        if not rows:
            return
        dialect = {"sqlite": sqlite_insert, "postgresql": postgresql_insert}[self.connection.dialect.name]
        self.connection.execute(dialect(table).on_conflict_do_nothing(), rows)

    def save(self, plan: PagePlan, source_id: int) -> None:
        """Write a page's plan: its new items, changes, keys, tags and sightings."""
        ids = self._insert_items([item for item in plan.items if item.is_new])

        def stored(ref: int) -> int:
            return ids.get(ref, ref)

        changed = [item for item in plan.items if not item.is_new]
        if changed:
            self.connection.execute(
                update(items_table).where(items_table.c.id == bindparam("item_id")),
                [{"item_id": item.ref, "title": item.title, "summary": item.summary,
                  "content": item.content, "published": item.published, "updated": self.now}
                 for item in changed])
            # Rows whose date is already right are left alone, not rewritten.
            tagged = item_tags.c
            self.connection.execute(
                update(item_tags)
                .where(tagged.item_id == bindparam("tagged_item"), tagged.published != bindparam("moved_to"))
                .values(published=bindparam("moved_to")),
                [{"tagged_item": item.ref, "moved_to": item.published} for item in changed])
        tag_ids = self._tag_ids([name for item in plan.items for name in item.new_tags])
        self._insert_new(item_tags, [{"item_id": stored(item.ref), "tag_id": tag_ids[tag_key(name)],
                                      "published": item.published}
                                     for item in plan.items for name in item.new_tags])
        self._insert_new(fingerprints_table, [
            {"item_id": stored(ref), "kind": kind, "value": value,
             "simhash": _signed(fp.simhash) if kind.startswith("band") else None}
            for ref, fp in plan.fingerprints
            for kind, value in dict.fromkeys(identity_keys(fp) + topic_index_keys(fp))])
        self._insert_new(item_sources, [{"item_id": stored(ref), "source_id": source_id}
                                        for ref in dict.fromkeys(ref for ref, _ in plan.sightings)])
        self.connection.execute(sightings.delete().where(sightings.c.source_id == source_id))
        if plan.sightings:
            self.connection.execute(sightings.insert(), [
                {"source_id": source_id, "position": position, "item_id": stored(ref), "title": title}
                for position, (ref, title) in enumerate(plan.sightings)])
        self._link([(stored(a), stored(b)) for a, b in plan.links])
        self.changed = self.changed or bool(plan.items)

    def _insert_items(self, new: list[PlannedItem]) -> dict[int, int]:
        """Insert new items; their ids by ref."""
        if not new:
            return {}
        rows = [{"guid": item.guid, "key": guid_key(item.guid), "title": item.title,
                 "summary": item.summary, "content": item.content, "published": item.published,
                 "updated": self.now, "first_seen": self.now} for item in new]
        result = self.connection.execute(
            insert(items_table).returning(items_table.c.id, sort_by_parameter_order=True), rows)
        return {item.ref: item_id for item, item_id in zip(new, result.scalars())}

    def _tag_ids(self, names: Sequence[str]) -> dict[str, int]:
        """Tag ids by key, creating the tags not seen before."""
        by_key = {tag_key(name): name for name in reversed(names)}  # the first name shown wins
        if not by_key:
            return {}
        table = tags_table
        ids = dict(self.connection.execute(select(table.c.key, table.c.id).where(table.c.key.in_(by_key))).all())
        for key in sorted(by_key.keys() - ids.keys()):
            name = by_key[key]
            ids[key] = self.connection.scalar(insert(table).values(
                name=name, key=key, slug=self._free_slug(tag_slug(name))).returning(table.c.id))
        return ids

    def _free_slug(self, slug: str) -> str:
        # Two tags may fold to one slug ("C" and "C++"): the later one is numbered.
        candidate, n = slug, 1
        while self.connection.scalar(select(tags_table.c.id).where(tags_table.c.slug == candidate)) is not None:
            n += 1
            candidate = f"{slug}-{n}"
        return candidate

    def _link(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Record pairs of items as reports of one event; both entries gain a
        link, so both count as updated for the feeds."""
        if not pairs:
            return
        links = item_links.c
        existing = set(self.connection.execute(
            select(links.item_id, links.related_id).where(links.item_id.in_({a for a, _ in pairs}))).all())
        new = [(a, b) for a, b in dict.fromkeys(pairs) if (a, b) not in existing]
        if not new:
            return
        self.connection.execute(item_links.insert(), [
            {"item_id": x, "related_id": y} for a, b in new for x, y in ((a, b), (b, a))])
        self.connection.execute(update(items_table).where(items_table.c.id.in_({i for p in new for i in p}))
                                .values(updated=self.now))
        self.changed = True


# Arbitrary, fixed: the PostgreSQL advisory lock only one ingester may hold.
INGEST_LOCK_KEY = 0x616767726567  # "aggreg"


class IngestLock:
    """Held by the one process that ingests into a database: a file lock
    beside an SQLite file, a session-level advisory lock on PostgreSQL. The
    operating system or the server releases it when the process dies."""

    def __init__(self, release):
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None


MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _alembic(connection) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@functools.cache
def _migrations() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic(None))


class Storage:
    """The store behind a URL. `migrate` brings an older schema up to date on
    opening (the default for SQLite); otherwise an out-of-date schema is
    refused with the command that fixes it."""

    def __init__(self, url: str, migrate: bool | None = None):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._checkpointer: Checkpointer | None = None
        self._checkpointer_lock = threading.Lock()
        if migrate is None:
            migrate = self.engine.dialect.name == "sqlite"
        try:
            if migrate:
                self.upgrade()
            else:
                self.check_schema()
        except BaseException:
            self.engine.dispose()
            raise

    def schema_revisions(self) -> tuple[str | None, str]:
        """(the database's schema revision, the newest this code knows)."""
        head = _migrations().get_current_head()
        with self._errors("read the schema version"), self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision(), head

    def check_schema(self) -> None:
        current, head = self.schema_revisions()
        if current == head:
            return
        self.check_not_newer(current)
        raise StorageError(f"the database schema is at {current or 'nothing'}, this aggregator needs "
                           f"{head}: run `aggregator db upgrade`")

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (creating it in an empty database)."""
        current, head = self.schema_revisions()
        if current == head:
            return
        self.check_not_newer(current)
        with self._errors("upgrade the schema"), self.engine.begin() as connection:
            alembic_command.upgrade(_alembic(connection), "head")

    def check_not_newer(self, current: str | None) -> None:
        known = {rev.revision for rev in _migrations().walk_revisions()}
        if current is not None and current not in known:
            raise StorageError(f"the database schema ({current}) is newer than this aggregator "
                               "knows; upgrade aggregator")

    def close(self) -> None:
        with self._checkpointer_lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
        self.engine.dispose()

    def _start_checkpointer(self) -> None:
        """A store that is written to gets its checkpointer (SQLite files only:
        PostgreSQL checkpoints on its own; readers never need one)."""
        if self._checkpointer is not None or self.engine.dialect.name != "sqlite":
            return
        with self._checkpointer_lock:
            if self._checkpointer is None and self.engine.url.database not in (None, "", ":memory:"):
                self._checkpointer = Checkpointer(self.engine)

    def ingest_lock(self) -> IngestLock:
        """Become the database's only ingester, or raise StorageError saying who is."""
        if self.engine.dialect.name == "sqlite":
            return self._file_lock()
        connection = self.engine.connect()
        with self._errors("take the ingest lock"):
            got = connection.scalar(select(func.pg_try_advisory_lock(INGEST_LOCK_KEY)))
        if not got:
            connection.close()
            raise StorageError("another aggregator is already ingesting into this database")

        def release() -> None:
            # The lock belongs to the session, which the pool would keep alive.
            connection.scalar(select(func.pg_advisory_unlock(INGEST_LOCK_KEY)))
            connection.close()

        return IngestLock(release)

    def _file_lock(self) -> IngestLock:
        database = self.engine.url.database
        if not database or database == ":memory:":
            return IngestLock(None)
        path = Path(database + ".lock")
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise StorageError(f"another aggregator (pid {holder}) is already ingesting into "
                               f"{database}; stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return IngestLock(handle.close)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as error:
            reason = str(getattr(error, "orig", None) or error).splitlines()[0]
            raise StorageError(f"database error while trying to {doing}: {reason}") from error

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._errors("read"), self._sessions() as session:
            yield session

    @contextlib.contextmanager
    def writer(self, now: datetime) -> Iterator[Writer]:
        """One transaction: everything written inside lands together or not at all."""
        self._start_checkpointer()
        with self._errors("write"), self.engine.begin() as connection:
            writer = Writer(connection, now)
            yield writer
            if writer.changed:
                connection.execute(update(StateRow).where(StateRow.key == "data_version")
                                   .values(value=StateRow.value + 1))

    # --- sources ---------------------------------------------------------

    def sources(self) -> dict[str, SourceFile]:
        c = sources_table.c
        columns = (c.path, c.size, c.mtime_ns, c.sha256, c.status, c.reason, c.item_count, c.checked_at)
        with self._errors("read"), self.engine.connect() as connection:
            rows = connection.execute(select(*columns).order_by(c.path)).all()
        return {row[0]: SourceFile(*row) for row in rows}

    def file_states(self) -> dict[str, FileState]:
        """Every seed file's size, mtime and status, by path: all a rescan
        needs to pass over an unchanged file, read as plainly as possible."""
        # Straight from the driver's cursor: wrapping each of tens of thousands
        # of rows in a result row cost more than reading them.
        with self._errors("read"), self.engine.connect() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute("SELECT path, size, mtime_ns, status FROM sources")
                rows = cursor.fetchall()
            finally:
                cursor.close()
        return {path: FileState(size, mtime_ns, status) for path, size, mtime_ns, status in rows}

    def content_hash(self, path: str) -> str | None:
        """The SHA-256 of a seed file's bytes when it was last read."""
        with self._errors("read"), self.engine.connect() as connection:
            return connection.scalar(select(sources_table.c.sha256).where(sources_table.c.path == path))

    def touch_source(self, path: str, size: int, mtime_ns: int, now: datetime) -> None:
        """Same bytes, new size or mtime: remember them so the next scan skips the file."""
        with self.writer(now) as w:
            w.connection.execute(
                update(SourceRow)
                .where(SourceRow.path == path)
                .values(size=size, mtime_ns=mtime_ns, checked_at=now)
            )

    def mark_missing(self, paths: Sequence[str], now: datetime) -> None:
        if not paths:
            return
        with self.writer(now) as w:
            w.connection.execute(
                update(SourceRow)
                .where(SourceRow.path.in_(paths))
                .values(status="missing", reason="file no longer in the seed folder",
                        checked_at=now)
            )

    # --- reading for feeds and pages ---------------------------------------

    def sightings(self) -> list[tuple[str, int, str, str]]:
        """(file, position on the page, title shown there, item guid) of every sighting."""
        with self._read() as session:
            rows = session.execute(
                select(SourceRow.path, sightings.c.position, sightings.c.title, ItemRow.guid)
                .join(SourceRow, SourceRow.id == sightings.c.source_id)
                .join(ItemRow, ItemRow.id == sightings.c.item_id)
                .order_by(SourceRow.path, sightings.c.position)
            )
            return [tuple(row) for row in rows]

    def data_version(self) -> int:
        with self._read() as session:
            return session.scalar(select(StateRow.value).where(StateRow.key == "data_version")) or 0

    def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        with self._read() as session:
            session.execute(select(1))

    def stats(self) -> tuple[int, int, dict[str, int]]:
        """(items, tags, seed files by status)."""
        with self._read() as session:
            items = session.scalar(select(func.count(ItemRow.id))) or 0
            tags = session.scalar(select(func.count(TagRow.id))) or 0
            files = dict(session.execute(
                select(SourceRow.status, func.count(SourceRow.id)).group_by(SourceRow.status)).all())
            return items, tags, files

    def item_count(self) -> int:
        with self._read() as session:
            return session.scalar(select(func.count(ItemRow.id))) or 0

    def tags(self) -> list[tuple[Tag, int]]:
        """Every tag with its item count, by name."""
        with self._read() as session:
            rows = session.execute(
                select(TagRow, func.count(item_tags.c.item_id))
                .join(item_tags, item_tags.c.tag_id == TagRow.id)
                .group_by(TagRow.id)
                .order_by(TagRow.key)
            )
            return [(_tag(tag), count) for tag, count in rows]

    def find_tag(self, slug_or_name: str) -> Tag | None:
        """A tag by its slug, or by its name in any case or normal form."""
        with self._read() as session:
            row = session.scalar(select(TagRow).where(TagRow.slug == slug_or_name.lower()))
            if row is None:
                row = session.scalar(select(TagRow).where(TagRow.key == tag_key(slug_or_name)))
            return None if row is None else _tag(row)

    def newest_items(self, limit: int, offset: int = 0,
                     tag_slugs: Sequence[str] = (), match_all: bool = False) -> list[StoredItem]:
        """Items newest first; with tags, those carrying any (or all) of them."""
        if tag_slugs:
            page = _tagged_page(sorted(set(tag_slugs)), match_all, limit, offset)
            query = (select(ItemRow).join(page, page.c.item_id == ItemRow.id)
                     .order_by(page.c.published.desc(), page.c.item_id))
        else:
            query = (select(ItemRow).order_by(ItemRow.published.desc(), ItemRow.id.asc())
                     .limit(limit).offset(offset))
        with self._read() as session:
            return [_stored(row) for row in session.scalars(query.options(*WHOLE_ITEM))]

    def all_items(self) -> list[StoredItem]:
        with self._read() as session:
            rows = session.scalars(
                select(ItemRow)
                .order_by(ItemRow.published.desc(), ItemRow.id.asc())
                .options(*WHOLE_ITEM)
            )
            return [_stored(row) for row in rows]

    def item(self, key: str) -> StoredItem | None:
        with self._read() as session:
            row = session.scalar(
                select(ItemRow)
                .where(ItemRow.key == key)
                .options(*WHOLE_ITEM)
            )
            return None if row is None else _stored(row)
