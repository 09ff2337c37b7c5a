"""Everything specific to PostgreSQL: engine options, the advisory lock of
the one ingester, insert-if-absent. PostgreSQL checkpoints on its own."""

from __future__ import annotations

from sqlalchemy import Table, create_engine, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from aggregator.errors import StorageError
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
