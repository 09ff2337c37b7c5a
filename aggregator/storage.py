"""The store. The only module that talks to SQLAlchemy; everything else sees
the records of aggregator.model. SQLite by default, any SQLAlchemy URL works:
nothing below is specific to one database except the SQLite connection set-up.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
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
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    and_,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
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

from aggregator.dedupe import guid_key, tag_key, tag_slug
from aggregator.errors import StorageError
from aggregator.model import (
    Fingerprint,
    ItemUpdate,
    KnownItem,
    ParsedItem,
    SourceFile,
    StoredItem,
    Tag,
)

log = logging.getLogger(__name__)

MAX_CANDIDATES = 50
MAX_RELATED_CANDIDATES = 10  # reports of one event share the most headline words


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


item_tags = Table(
    "item_tags",
    Base.metadata,
    Column("item_id", ForeignKey("items.id", ondelete="CASCADE"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_item_tags_tag", "tag_id", "item_id"),
)

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

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(40))

    __table_args__ = (
        UniqueConstraint("kind", "value", "item_id", name="uq_fingerprint"),
        Index("ix_fingerprints_item", "item_id"),
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


class StateRow(Base):
    """Counters of the store. `data_version` goes up with every ingest that
    changed what the feeds show: servers that do not ingest themselves
    (replicas) watch it to know when to drop their cached feeds."""

    __tablename__ = "state"

    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the server read while the ingester writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StorageError(f"database url {url!r} is not a valid SQLAlchemy URL") from error
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


def _known(row: ItemRow) -> KnownItem:
    return KnownItem(
        id=row.id,
        guid=row.guid,
        title=row.title,
        summary=row.summary,
        content=row.content,
        published=row.published,
        tag_keys=frozenset(t.key for t in row.tags),
    )


def _identity_keys(fp: Fingerprint) -> list[tuple[str, str]]:
    keys = [("title", fp.title_key)]
    if fp.lead_key:
        keys.append(("lead", fp.lead_key))
    keys.extend((f"band{i}", format(band, "04x")) for i, band in enumerate(fp.bands))
    return keys


def _fingerprint_keys(fp: Fingerprint) -> list[tuple[str, str]]:
    return _identity_keys(fp) + [("topic", key) for key in fp.topics]


def _any_key(keys: list[tuple[str, str]]):
    # Two IN lists use the (kind, value) index on every database; a row-value
    # IN made SQLite scan the table. Values are hashes, so pairing a kind with
    # another kind's value only ever adds a candidate that dedup then rejects.
    return and_(FingerprintRow.kind.in_({k for k, _ in keys}),
                FingerprintRow.value.in_({v for _, v in keys}))


class Writer:
    """Writes of one ingest transaction (one seed file)."""

    def __init__(self, session: Session, now: datetime):
        self.session = session
        self.now = now
        self.changed = False  # anything a feed shows
        self._tag_rows: dict[str, TagRow] = {}  # a tag page names one tag many times

    def candidates(self, fp: Fingerprint) -> list[KnownItem]:
        """Stored items sharing any identity key with the fingerprint."""
        ids = (select(FingerprintRow.item_id).where(_any_key(_identity_keys(fp)))
               .distinct().limit(MAX_CANDIDATES))
        return self._known_items(ids)

    def related_candidates(self, fp: Fingerprint, item_id: int) -> list[KnownItem]:
        """The few other items whose headlines share the most topic-word pairs."""
        if not fp.topics:
            return []
        shared = (
            select(FingerprintRow.item_id)
            .where(_any_key([("topic", key) for key in fp.topics]), FingerprintRow.item_id != item_id)
            .group_by(FingerprintRow.item_id)
            .order_by(func.count().desc(), FingerprintRow.item_id)
            .limit(MAX_RELATED_CANDIDATES)
        )
        rows = self.session.execute(
            select(ItemRow.id, ItemRow.guid, ItemRow.title, ItemRow.summary, ItemRow.content,
                   ItemRow.published).where(ItemRow.id.in_(shared.subquery().select())))
        return [KnownItem(*row) for row in rows]

    def _known_items(self, ids) -> list[KnownItem]:
        rows = self.session.scalars(
            select(ItemRow).where(ItemRow.id.in_(ids)).options(selectinload(ItemRow.tags))
        )
        return [_known(row) for row in rows]

    def link(self, item_id: int, related_id: int) -> None:
        """Record two items as reports of one event."""
        exists = self.session.scalar(select(item_links.c.item_id).where(
            item_links.c.item_id == item_id, item_links.c.related_id == related_id))
        if exists is not None:
            return
        self.session.execute(item_links.insert(), [
            {"item_id": item_id, "related_id": related_id},
            {"item_id": related_id, "related_id": item_id},
        ])
        # Both entries gain a link, so both count as updated for the feeds.
        self.session.execute(update(ItemRow).where(ItemRow.id.in_((item_id, related_id)))
                             .values(updated=self.now))
        self.changed = True

    def source(self, path: str, size: int, mtime_ns: int, sha256: str, status: str,
               reason: str | None, item_count: int) -> SourceRow:
        row = self.session.scalar(select(SourceRow).where(SourceRow.path == path))
        if row is None:
            row = SourceRow(path=path)
            self.session.add(row)
        row.size, row.mtime_ns, row.sha256 = size, mtime_ns, sha256
        row.status, row.reason, row.item_count = status, reason, item_count
        row.checked_at = self.now
        return row

    def forget_sightings(self, source: SourceRow) -> None:
        """A re-read page lists its items anew."""
        self.session.flush()
        self.session.execute(sightings.delete().where(sightings.c.source_id == source.id))

    def sighting(self, source: SourceRow, position: int, item_id: int, title: str) -> None:
        self.session.execute(sightings.insert().values(
            source_id=source.id, position=position, item_id=item_id, title=title))

    def _tags(self, names: Sequence[str]) -> list[TagRow]:
        rows: dict[str, TagRow] = {}
        for name in names:
            key = tag_key(name)
            if key in rows:
                continue
            row = self._tag_rows.get(key) or self.session.scalar(select(TagRow).where(TagRow.key == key))
            if row is None:
                row = TagRow(name=name, key=key, slug=self._free_slug(tag_slug(name)))
                self.session.add(row)
                self.session.flush()
            rows[key] = self._tag_rows[key] = row
        return list(rows.values())

    def _free_slug(self, slug: str) -> str:
        # Two tags may fold to one slug ("C" and "C++"): the later one is numbered.
        candidate, n = slug, 1
        while self.session.scalar(select(TagRow.id).where(TagRow.slug == candidate)) is not None:
            n += 1
            candidate = f"{slug}-{n}"
        return candidate

    def _add_fingerprint(self, item_id: int, fp: Fingerprint, new: bool = False) -> None:
        wanted = _fingerprint_keys(fp)
        if new:
            self.session.execute(FingerprintRow.__table__.insert(), [
                {"item_id": item_id, "kind": kind, "value": value} for kind, value in set(wanted)])
            return
        have = set(
            self.session.execute(
                select(FingerprintRow.kind, FingerprintRow.value).where(
                    FingerprintRow.item_id == item_id
                )
            )
        )
        for kind, value in wanted:
            if (kind, value) not in have:
                self.session.add(FingerprintRow(item_id=item_id, kind=kind, value=value))

    def guid_taken(self, guid: str) -> bool:
        return self.session.scalar(select(ItemRow.id).where(ItemRow.guid == guid)) is not None

    def insert(self, item: ParsedItem, fp: Fingerprint, guid: str, published: datetime,
               source: SourceRow) -> int:
        row = ItemRow(
            guid=guid,
            key=guid_key(guid),
            title=item.title,
            summary=item.summary,
            content=item.content,
            published=published,
            updated=self.now,
            first_seen=self.now,
        )
        row.tags = self._tags(item.tags)
        row.sources = [source]
        self.session.add(row)
        self.session.flush()
        self._add_fingerprint(row.id, fp, new=True)
        self.changed = True
        return row.id

    def update(self, item_id: int, change: ItemUpdate, fp: Fingerprint, source: SourceRow) -> bool:
        """Apply a merge; True when the item as a feed shows it changed."""
        row = self.session.get(ItemRow, item_id)
        if row is None:
            raise StorageError(f"item {item_id} vanished during ingest")
        for field in ("title", "summary", "content", "published"):
            value = getattr(change, field)
            if value is not None:
                setattr(row, field, value)
        if change.new_tags:
            row.tags.extend(self._tags(change.new_tags))
        if change.changes_entry:
            row.updated = self.now
            self.changed = True
        if source not in row.sources:
            row.sources.append(source)
        self._add_fingerprint(item_id, fp)
        self.session.flush()
        return change.changes_entry


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
        self.engine.dispose()

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
        with self._errors("write"), self._sessions() as session, session.begin():
            writer = Writer(session, now)
            yield writer
            if writer.changed:
                session.execute(update(StateRow).where(StateRow.key == "data_version")
                                .values(value=StateRow.value + 1))

    # --- sources ---------------------------------------------------------

    def sources(self) -> dict[str, SourceFile]:
        # Plain rows, not ORM objects: a rescan reads this for every file.
        columns = (SourceRow.path, SourceRow.size, SourceRow.mtime_ns, SourceRow.sha256,
                   SourceRow.status, SourceRow.reason, SourceRow.item_count, SourceRow.checked_at)
        with self._read() as session:
            rows = session.execute(select(*columns).order_by(SourceRow.path))
            return {row[0]: SourceFile(*row) for row in rows}

    def touch_source(self, path: str, size: int, mtime_ns: int, now: datetime) -> None:
        """Same bytes, new size or mtime: remember them so the next scan skips the file."""
        with self.writer(now) as w:
            w.session.execute(
                update(SourceRow)
                .where(SourceRow.path == path)
                .values(size=size, mtime_ns=mtime_ns, checked_at=now)
            )

    def mark_missing(self, paths: Sequence[str], now: datetime) -> None:
        if not paths:
            return
        with self.writer(now) as w:
            w.session.execute(
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
        query = select(ItemRow)
        if tag_slugs:
            tagged = (
                select(item_tags.c.item_id)
                .join(TagRow, TagRow.id == item_tags.c.tag_id)
                .where(TagRow.slug.in_(tag_slugs))
                .group_by(item_tags.c.item_id)
            )
            if match_all:
                tagged = tagged.having(func.count() == len(set(tag_slugs)))
            query = query.where(ItemRow.id.in_(tagged))
        query = (
            query.order_by(ItemRow.published.desc(), ItemRow.id.asc())
            .limit(limit)
            .offset(offset)
            .options(*WHOLE_ITEM)
        )
        with self._read() as session:
            return [_stored(row) for row in session.scalars(query)]

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
