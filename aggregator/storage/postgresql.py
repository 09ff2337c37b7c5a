"""Everything specific to PostgreSQL: engine options, the advisory lock of
the one ingester, insert-if-absent, the full-text search index.
PostgreSQL checkpoints on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    bindparam,
    column,
    create_engine,
    func,
    literal_column,
    select,
    table,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import Subquery

from aggregator.errors import StorageError
from aggregator.search import SearchDocument
from aggregator.storage.engine import IngestLock, reason_of

# Arbitrary, fixed: the advisory lock only one ingester may hold.
INGEST_LOCK_KEY = 0x616767726567  # "aggreg"


def make_engine(url: URL) -> Engine:
    try:
        return create_engine(url, pool_pre_ping=True)
    except ModuleNotFoundError as error:
        raise StorageError(f"database.url names PostgreSQL, but its driver is not installed "
                           f"({error.name}): pip install 'aggregator[postgresql]'") from None


def file_identity(url: URL) -> None:
    return None  # the server owns its files


def insert_if_absent(table: Table) -> Insert:
    return insert(table).on_conflict_do_nothing()


def ingest_lock(engine: Engine) -> IngestLock:
    """A session-level advisory lock: the server drops it when the process dies."""
    try:
        connection = engine.connect()
        got = connection.scalar(select(func.pg_try_advisory_lock(INGEST_LOCK_KEY)))
    except SQLAlchemyError as error:
        raise StorageError(f"database error while trying to take the ingest lock: {reason_of(error)}") from error
    if not got:
        connection.close()
        raise StorageError("another aggregator is already ingesting into this database")

    def release() -> None:
        # The lock belongs to the session, which the pool would keep alive.
        connection.scalar(select(func.pg_advisory_unlock(INGEST_LOCK_KEY)))
        connection.close()

    return IngestLock(release)


def checkpointer(engine: Engine) -> None:
    return None


# --- the search index: a tsvector column on the items, with a GIN index -------

ITEMS = table("items", column("id"), column("search_vector"))
# A search reads the words in the item's own row.
TEXT_BY_ID = False
CONFIG = literal_column("'simple'")  # the words come folded and split already: no stemming, no stop words


def create_index(connection: Connection) -> None:
    connection.exec_driver_sql("ALTER TABLE items ADD COLUMN search_vector tsvector")
    connection.exec_driver_sql("CREATE INDEX ix_items_search ON items USING gin (search_vector)")


def unindex(connection: Connection, ids: Sequence[int]) -> None:
    pass  # the vector goes with its item


def _weighted(name: str, weight: str):
    return func.setweight(func.to_tsvector(CONFIG, bindparam(name)), literal_column(f"'{weight}'"))


def index(connection: Connection, documents: Mapping[int, SearchDocument], fresh: bool) -> None:
    # ts_rank weighs A (the title) most, then B (tags), then D (the text).
    vector = _weighted("title", "A").op("||")(_weighted("tags", "B")).op("||")(_weighted("body", "D"))
    if documents:
        connection.execute(update(ITEMS).where(ITEMS.c.id == bindparam("item_id")).values(search_vector=vector),
                           [{"item_id": item_id, "title": doc.title, "tags": doc.tags, "body": doc.body}
                            for item_id, doc in documents.items()])


Clauses = Sequence[Sequence[tuple[str, ...]]]


def _tsquery(clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()):
    """Each phrase a bound value given to phraseto_tsquery, combined with the
    tsquery operators: nothing a person typed is read as query syntax."""
    def either(phrases: Sequence[tuple[str, ...]]):
        query = func.phraseto_tsquery(CONFIG, " ".join(phrases[0]))
        for other in phrases[1:]:
            query = query.op("||")(func.phraseto_tsquery(CONFIG, " ".join(other)))
        return query

    query = either(clauses[0])
    for clause in clauses[1:]:
        query = query.op("&&")(either(clause))
    return query.op("&&")(func.tsquery_not(either(excluded))) if excluded else query


def _matches(clauses: Clauses, excluded: Sequence[tuple[str, ...]] = (), vector=ITEMS.c.search_vector):
    return vector.op("@@")(_tsquery(clauses, excluded))


def text_ids(clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()) -> Select:
    return select(ITEMS.c.id).where(_matches(clauses, excluded))


def text_plan(connection: Connection, clauses: Clauses, excluded: Sequence[tuple[str, ...]] = ()) -> str:
    return "first"  # PostgreSQL's planner weighs the GIN index against the date order itself


def text_filter(item_id: ColumnElement, clauses: Clauses, plan: str = "first",
                excluded: Sequence[tuple[str, ...]] = ()) -> ColumnElement[bool]:
    # On the row itself: the items of the query around it.
    return _matches(clauses, excluded, literal_column("items.search_vector"))


def text_count(clauses: Clauses, cap: int, excluded: Sequence[tuple[str, ...]] = ()) -> Select:
    return select(func.count()).select_from(text_ids(clauses, excluded).limit(cap).subquery())


def text_ranks(clauses: Clauses, best: int | None = None, excluded: Sequence[tuple[str, ...]] = ()) -> Subquery:
    """(item_id, rank) of the matches, the lower the better; only the `best` when given."""
    query = _tsquery(clauses, excluded)
    rank = -func.ts_rank(ITEMS.c.search_vector, query)
    found = select(ITEMS.c.id.label("item_id"), rank.label("rank")).where(ITEMS.c.search_vector.op("@@")(query))
    return (found.order_by(rank).limit(best) if best else found).subquery()
