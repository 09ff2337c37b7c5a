"""Everything specific to SQLite: connection set-up, the write-ahead log's
checkpointer, the file lock of the one ingester, insert-if-absent, the
FTS5 search index."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    column,
    create_engine,
    delete,
    event,
    exists,
    func,
    literal_column,
    select,
    table,
)
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import Subquery

from aggregator.errors import StorageError
from aggregator.search import SearchDocument
from aggregator.storage.engine import IngestLock, reason_of

log = logging.getLogger(__name__)

# The writer checkpoints itself past this many log pages (200 MB): only a
# checkpoint with nothing written after it lets the log start over, and while
# an ingest runs that is the writer's own. A log that grows slows every read a
# little, so the limit is not larger.
WAL_PAGES_MAX = 50_000
WAL_BYTES_KEPT = 64 * 1024 * 1024  # what a log shrinks back to when it starts over
CHECKPOINT_SECONDS = 1.0


def _on_connect(dbapi_connection, _record) -> None:
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


def _file(url: URL) -> str | None:
    """The database file, or None for an in-memory database."""
    return url.database if url.database not in (None, "", ":memory:") else None


def make_engine(url: URL) -> Engine:
    if (database := _file(url)) is not None:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _on_connect)
    return engine


def file_identity(url: URL) -> tuple[int, int] | None:
    """(device, inode) of the database file: the open connections write to
    this file whatever name it has now."""
    if (database := _file(url)) is None:
        return None
    try:
        info = os.stat(database)
    except FileNotFoundError:
        return (0, 0)
    return info.st_dev, info.st_ino


def insert_if_absent(table: Table) -> Insert:
    return insert(table).on_conflict_do_nothing()


def ingest_lock(engine: Engine) -> IngestLock:
    """A file lock beside the database, holding the pid of its holder."""
    database = _file(engine.url)
    if database is None:
        return IngestLock(None)
    handle = open(database + ".lock", "a+")  # noqa: SIM115 - held open: the open file is the lock
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
                log.warning("WAL checkpoint failed: %s", reason_of(error))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def checkpointer(engine: Engine) -> Checkpointer | None:
    """A file that is written to gets its checkpointer."""
    return Checkpointer(engine) if _file(engine.url) is not None else None


# --- the search index: an FTS5 table beside the items, its rowid the item's id ---

# A search asks the index of an item by its id, wherever the id is read from.
TEXT_BY_ID = True
SEARCH = table("items_search", column("rowid"), column("title"), column("body"), column("tags"))
# Title first, then tags, then the text: a word in the headline says most.
RANK_WEIGHTS = "10.0, 1.0, 4.0"


def create_index(connection: Connection) -> None:
    # The words come folded and split already (aggregator.search.words);
    # unicode61 only has to cut them at the spaces.
    connection.exec_driver_sql("CREATE VIRTUAL TABLE items_search USING fts5(title, body, tags, "
                               "tokenize = 'unicode61 remove_diacritics 2')")


def unindex(connection: Connection, ids: Sequence[int]) -> None:
    connection.execute(delete(SEARCH).where(SEARCH.c.rowid.in_(ids)))


def index(connection: Connection, documents: Mapping[int, SearchDocument], fresh: bool) -> None:
    """Index the items' documents; `fresh`: items never indexed, with nothing to replace."""
    if not fresh:
        unindex(connection, list(documents))
    if documents:
        connection.execute(insert(SEARCH), [{"rowid": item_id, "title": doc.title, "body": doc.body,
                                             "tags": doc.tags} for item_id, doc in documents.items()])


Clauses = Sequence[Sequence[tuple[str, ...]]]


def _match(clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()) -> str:
    """An FTS5 query from words alone: each phrase quoted (the words hold only
    letters and digits, so nothing a person typed is read as FTS5 syntax)."""
    def either(phrases: Sequence[tuple[str, ...]]) -> str:
        return "(" + " OR ".join('"' + " ".join(phrase) + '"' for phrase in phrases) + ")"

    wanted = " AND ".join(either(clause) for clause in clauses)
    return f"({wanted}) NOT {either(excluded)}" if excluded else wanted


def _matches(clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()):
    return literal_column("items_search").match(_match(clauses, excluded))


def text_ids(clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()) -> Select:
    """Ids of the items whose words match every clause (any phrase of each) and none of `excluded`."""
    return select(SEARCH.c.rowid).where(_matches(clauses, excluded))


# How many matches decide the way a newest-first search reads (see `text_filter`).
FEW_MATCHES = 2_000
MANY_MATCHES = 50_000


def text_plan(connection: Connection, clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()) -> str:
    """How to find the newest matches, by how many there are (counted no
    further than MANY_MATCHES, a few milliseconds): "first" reads the
    matches and sorts them; "ordered" reads the newest items in order and
    keeps those among the matches; "probe" asks the index of each newest item
    in turn, without reading all matches at all."""
    found = connection.scalar(text_count(clauses, MANY_MATCHES, excluded))
    if found >= MANY_MATCHES:
        return "probe"
    return "ordered" if found > FEW_MATCHES else "first"


def text_filter(item_id: ColumnElement, clauses: Clauses, plan: str = "first",
                excluded: Sequence[tuple[str, ...]] = ()) -> ColumnElement[bool]:
    """The items matching the clauses, as a condition read the way the plan says.
    A few matches are read and sorted ("first", SQLite's own choice); more
    are kept in a temporary index while the newest items are read in order
    (`+id` keeps SQLite from looking the items up by id); with very many,
    every other item matches, and asking the index of each of the newest is
    quickest of all."""
    if plan == "probe":
        return exists(select(literal_column("1")).select_from(SEARCH).where(
            _matches(clauses, excluded), SEARCH.c.rowid == item_id))
    return (item_id + 0 if plan == "ordered" else item_id).in_(text_ids(clauses, excluded))


def text_count(clauses: Clauses, cap: int, excluded: Sequence[tuple[str, ...]] = ()) -> Select:
    """How many items match the clauses, counted no further than `cap`."""
    return select(func.count()).select_from(text_ids(clauses, excluded).limit(cap).subquery())


def text_ranks(clauses: Clauses, best: int | None = None, excluded: Sequence[tuple[str, ...]] = ()) -> Subquery:
    """(item_id, rank) of the matches, the lower the better; only the `best` when given."""
    rank = func.bm25(literal_column("items_search"), literal_column(RANK_WEIGHTS))
    query = select(SEARCH.c.rowid.label("item_id"), rank.label("rank")).where(_matches(clauses, excluded))
    return (query.order_by(rank).limit(best) if best else query).subquery()
