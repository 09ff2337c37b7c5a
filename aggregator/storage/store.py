"""`Storage`: the store behind a URL, its transactions and every read the
feeds, pages and commands make."""

from __future__ import annotations

import contextlib
import operator
import threading
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from sqlalchemy import bindparam, exists, func, select, union
from sqlalchemy.engine import URL, Connection, RootTransaction
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker
from sqlalchemy.sql.selectable import Subquery

from aggregator.clock import from_micros
from aggregator.errors import StorageError
from aggregator.model import UNSETTLED, FileState, FileStatus, FolderState, SourceFile, StoredItem, Tag
from aggregator.names import tag_key
from aggregator.search import SearchQuery
from aggregator.storage import migrate, search
from aggregator.storage.engine import IngestLock, backend, make_engine, reason_of
from aggregator.storage.schema import (
    ItemRow,
    SourceRow,
    StateRow,
    TagRow,
    item_tags,
    sightings,
    sources_table,
    tags_table,
)
from aggregator.storage.writer import Writer

# Every file not marked missing, with its mtime only when it was read as it
# is: one query, the driver's own SQL (the statuses are ours, written in).
_UNSETTLED_SQL = ", ".join(f"'{status}'" for status in UNSETTLED)
_FOLDER_STATE = (f"SELECT path, size, CASE WHEN status IN ({_UNSETTLED_SQL}) THEN NULL ELSE mtime_ns END "
                 f"FROM sources WHERE status != '{FileStatus.MISSING}'")
_FILE_STATE = (select(sources_table.c.size, sources_table.c.status, sources_table.c.sha256)
               .where(sources_table.c.path == bindparam("at_path")))

# A search page says "10 000 or more" rather than count a common word to the last.
COUNT_CAP = 10_000

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
        link=row.link,
    )


def _tag_id(slug: str):
    return select(tags_table.c.id).where(tags_table.c.slug == slug).scalar_subquery()


def _tagged_page(slugs: Sequence[str], match_all: bool, limit: int, offset: int) -> Subquery:
    """(item_id, published) of one page of the items carrying any (or all) of
    the tags, in feed order. Each tag is read along its index in feed order
    and no further than the page needs; for all of them, the first tag's
    items are read in order and kept if they carry the others."""
    tagged = item_tags.c

    def newest(slug: str):
        return (select(tagged.item_id, tagged.published).where(tagged.tag_id == _tag_id(slug))
                .order_by(tagged.published.desc(), tagged.item_id))

    if match_all or len(slugs) == 1:
        first, *others = slugs
        query = newest(first)
        for slug in others:
            other = item_tags.alias()
            query = query.where(exists().where(other.c.item_id == tagged.item_id,
                                               other.c.tag_id == _tag_id(slug)))
        return query.limit(limit).offset(offset).subquery()
    # Any of them: the page lies within the first limit + offset of each tag.
    parts = [newest(slug).limit(limit + offset).subquery() for slug in slugs]
    either = union(*(select(part.c.item_id, part.c.published) for part in parts)).subquery()
    return (select(either.c.item_id, either.c.published)
            .order_by(either.c.published.desc(), either.c.item_id)
            .limit(limit).offset(offset).subquery())


class WriteBatch:
    """One transaction that the writers of several files share. A writer that
    fails rolls the whole batch back: what it held must be written again."""

    def __init__(self, storage: Storage):
        self._storage = storage
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None
        self._touched: set[int] = set()
        self._forgot = False

    @contextlib.contextmanager
    def writer(self, now: datetime) -> Iterator[Writer]:
        try:
            with self._storage._errors("write"):
                if self._connection is None:
                    self._connection = self._storage.engine.connect()
                    self._transaction = self._connection.begin()
                writer = Writer(self._connection, now)
                yield writer
                if writer.changed:
                    writer.record_change()
        except BaseException:
            self.rollback()
            raise
        self._touched |= writer.touched
        self._forgot |= writer.forgot

    def commit(self) -> None:
        """Everything written since the last commit lands, or a StorageError
        says why not (then nothing of it did)."""
        if self._transaction is None:
            return
        touched, forgot = self._touched, self._forgot
        try:
            with self._storage._errors("write"):
                self._transaction.commit()
        finally:
            self.rollback()  # after a commit: only closes the connection
        self._storage._committed(touched, forgot)

    def rollback(self) -> None:
        """Nothing written since the last commit lands."""
        transaction, connection = self._transaction, self._connection
        self._transaction = self._connection = None
        self._touched, self._forgot = set(), False
        try:
            if transaction is not None and transaction.is_active:
                transaction.rollback()
        finally:
            if connection is not None:
                connection.close()


class Storage:
    """The store behind a URL. `migrate` brings an older schema up to date on
    opening (the default for SQLite); otherwise an out-of-date schema is
    refused with the command that fixes it. A context manager: leaving it
    closes the store."""

    def __init__(self, url: str | URL, migrate: bool | None = None):
        self.engine = make_engine(url)
        self.url = self.engine.url
        self._backend = backend(self.engine.dialect.name)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._checkpointer = None
        self._checkpointer_asked = False
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
        self._identity = self._backend.file_identity(self.url)
        self._touched: set[int] = set()
        self._forgot = False
        self._batches = threading.local()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    # --- schema ----------------------------------------------------------------

    def schema_revisions(self) -> tuple[str | None, str]:
        """(the database's schema revision, the newest this code knows)."""
        with self._errors("read the schema version"), self.engine.connect() as connection:
            return migrate.current(connection), migrate.head()

    def check_schema(self) -> None:
        current, head = self.schema_revisions()
        if current == head:
            return
        self._check_not_newer(current)
        state = f"is at {current}" if current else "has no tables yet"
        raise StorageError(f"the database schema {state}, this aggregator needs {head}: "
                           "run `aggregator db upgrade`")

    def upgrade(self) -> None:
        """Bring the schema to the newest revision (creating it in an empty database)."""
        current, head = self.schema_revisions()
        if current == head:
            return
        self._check_not_newer(current)
        with self._errors("upgrade the schema"), self.engine.begin() as connection:
            migrate.upgrade(connection)

    @staticmethod
    def _check_not_newer(current: str | None) -> None:
        if not migrate.is_known(current):
            raise StorageError(f"the database schema ({current}) is newer than this aggregator "
                               "knows; upgrade aggregator")

    # --- life ------------------------------------------------------------------

    def close(self) -> None:
        with self._checkpointer_lock:
            if self._checkpointer is not None:
                self._checkpointer.stop()
                self._checkpointer = None
        self.engine.dispose()

    def ingest_lock(self) -> IngestLock:
        """Become the database's only ingester, or raise StorageError saying who is."""
        return self._backend.ingest_lock(self.engine)

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except SQLAlchemyError as error:
            raise StorageError(f"database error while trying to {doing}: {reason_of(error)}") from error

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._errors("read"), self._sessions() as session:
            yield session

    def check_file(self) -> None:
        """StorageError when the database file was deleted or replaced since it
        was opened: writes would go to a file no one will read again."""
        if self._identity is not None and self._backend.file_identity(self.url) != self._identity:
            raise StorageError(f"the database file {self.url.database} was deleted or replaced while in use; "
                               "restart the service to open the file now there")

    @contextlib.contextmanager
    def writer(self, now: datetime) -> Iterator[Writer]:
        """One transaction: everything written inside lands together or not at
        all. Inside `batch()`, on the same thread, the batch's transaction."""
        self.check_file()
        if not self._checkpointer_asked:  # a store that is written to gets one, where its database wants it
            with self._checkpointer_lock:
                if not self._checkpointer_asked:
                    self._checkpointer = self._backend.checkpointer(self.engine)
                    self._checkpointer_asked = True
        batch: WriteBatch | None = getattr(self._batches, "open", None)
        if batch is not None:
            with batch.writer(now) as writer:
                yield writer
            return
        with self._errors("write"), self.engine.begin() as connection:
            writer = Writer(connection, now)
            yield writer
            if writer.changed:
                writer.record_change()
        self._committed(writer.touched, writer.forgot)

    def _committed(self, touched: Iterable[int], forgot: bool) -> None:
        self._touched.update(touched)
        self._forgot |= forgot

    @contextlib.contextmanager
    def batch(self) -> Iterator[WriteBatch]:
        """Writers opened inside, on this thread, share one transaction until
        `commit()`: each transaction rewrites every index page it touched, and
        with one transaction per small file the same pages were written many
        times over. Committed on leaving, rolled back on an error."""
        batch = self._batches.open = WriteBatch(self)
        try:
            yield batch
            batch.commit()
        finally:
            batch.rollback()
            self._batches.open = None

    def take_touched(self) -> tuple[frozenset[int], bool]:
        """The items whose entries changed in the transactions committed since
        last asked, and whether any item was deleted; forgotten once told."""
        touched, forgot = frozenset(self._touched), self._forgot
        self._touched, self._forgot = set(), False
        return touched, forgot

    def tag_slugs_of(self, item_ids: Iterable[int]) -> set[str]:
        """The slugs of every tag these items carry."""
        ids = list(item_ids)
        slugs: set[str] = set()
        with self._read() as session:
            for start in range(0, len(ids), 500):
                slugs.update(session.scalars(
                    select(TagRow.slug).join(item_tags, item_tags.c.tag_id == TagRow.id)
                    .where(item_tags.c.item_id.in_(ids[start : start + 500])).distinct()))
        return slugs

    # --- seed files -------------------------------------------------------------

    def sources(self) -> dict[str, SourceFile]:
        c = sources_table.c
        columns = (c.path, c.size, c.mtime_ns, c.sha256, c.status, c.reason, c.item_count, c.checked_at)
        with self._errors("read"), self.engine.connect() as connection:
            rows = connection.execute(select(*columns).order_by(c.path)).all()
        return {path: SourceFile(path, size, mtime_ns, sha256, FileStatus(status), reason, count, checked)
                for path, size, mtime_ns, sha256, status, reason, count, checked in rows}

    def folder_state(self) -> FolderState:
        """The seed files as a rescan compares them with the listing."""
        # Straight from the driver's cursor into sets: wrapping each of tens
        # of thousands of rows in a result row cost more than reading them.
        with self._errors("read"), self.engine.connect() as connection:
            cursor = connection.connection.cursor()
            try:
                cursor.execute(_FOLDER_STATE)
                rows = cursor.fetchall()
            finally:
                cursor.close()
        # A row without an mtime matches no listed file: read again.
        return FolderState(set(rows), set(map(operator.itemgetter(0), rows)))

    def file_state(self, path: str) -> FileState | None:
        """What the last read of a seed file left: its size, status and hash."""
        with self._errors("read"), self.engine.connect() as connection:
            row = connection.execute(_FILE_STATE, {"at_path": path}).first()
        return None if row is None else FileState(*row)

    # --- feeds and pages ----------------------------------------------------------

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

    def data_changed_at(self) -> datetime:
        """When the data the feeds show last changed (the store's creation, before any item)."""
        with self._read() as session:
            times = dict(session.execute(select(StateRow.key, StateRow.value)
                                         .where(StateRow.key.in_(("data_changed_at", "created_at")))).all())
        return from_micros(times.get("data_changed_at") or times["created_at"])

    def changed_through(self, count: int, tag_slugs: Sequence[str] = (), match_all: bool = False) -> datetime | None:
        """The latest change among the first `count` items of a feed: page n
        of a feed shows different items whenever one of the items up to its
        end changed, or an item was added above it (that one changed then)."""
        if tag_slugs:
            page = _tagged_page(sorted(set(tag_slugs)), match_all, count, 0)
            query = select(func.max(ItemRow.updated)).join(page, page.c.item_id == ItemRow.id)
        else:
            newest = (select(ItemRow.updated).order_by(ItemRow.published.desc(), ItemRow.id.asc())
                      .limit(count).subquery())
            query = select(func.max(newest.c.updated))
        with self._read() as session:
            return session.scalar(query)

    def ping(self) -> None:
        """Raise StorageError unless the database answers, from the file it was opened at."""
        self.check_file()
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
            rows = session.scalars(select(ItemRow).order_by(ItemRow.published.desc(), ItemRow.id.asc())
                                   .options(*WHOLE_ITEM))
            return [_stored(row) for row in rows]

    def item(self, key: str) -> StoredItem | None:
        with self._read() as session:
            row = session.scalar(select(ItemRow).where(ItemRow.key == key).options(*WHOLE_ITEM))
            return None if row is None else _stored(row)

    # --- search -------------------------------------------------------------------

    def search(self, query: SearchQuery, limit: int, offset: int = 0, by_rank: bool = False) -> list[StoredItem]:
        """The items matching a query, newest first, or best first by rank
        (a title match before a match in the text)."""
        with self._read() as session:
            plan = search.plan_for(session.connection(), query, by_rank)
            ordered = search.matching(self.engine.dialect.name, query, by_rank, plan, limit + offset)
            ids = session.scalars(ordered.limit(limit).offset(offset)).all()
            rows = {row.id: row for row in session.scalars(select(ItemRow).where(ItemRow.id.in_(ids))
                                                           .options(*WHOLE_ITEM))}
            return [_stored(rows[item_id]) for item_id in ids]

    def search_count(self, query: SearchQuery, cap: int = COUNT_CAP) -> int:
        """How many items match a query; `cap` when that many or more do."""
        with self._read() as session:
            plan = search.plan_for(session.connection(), query, by_rank=False)
            return session.scalar(search.counting(self.engine.dialect.name, query, cap, plan)) or 0
