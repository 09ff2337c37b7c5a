"""The store: the only package that talks to SQLAlchemy; everything else sees
the records of aggregator.model. SQLite by default, or PostgreSQL.

    schema      tables and the UTC datetime column type
    engine      engines, URLs, and the one place that chooses per database
    sqlite      everything specific to SQLite (set-up, checkpointer, file lock)
    postgresql  everything specific to PostgreSQL (advisory lock)
    migrate     Alembic revisions in aggregator/migrations
    writer      every write, and the reads an ingest makes in its transaction
    search      the search index kept in step, and the query a search runs
    store       Storage: opening, transactions and every read
"""

from aggregator.storage.engine import IngestLock, missing_database
from aggregator.storage.schema import Base, UTCDateTime
from aggregator.storage.store import COUNT_CAP, Storage
from aggregator.storage.writer import KEYS_PER_QUERY, MAX_ITEMS_PER_KEY, MAX_ITEMS_PER_TOPIC, Writer

__all__ = [
           "COUNT_CAP",
           "KEYS_PER_QUERY",
           "MAX_ITEMS_PER_KEY",
           "MAX_ITEMS_PER_TOPIC",
           "Base",
           "IngestLock",
           "Storage",
           "UTCDateTime",
           "Writer",
           "missing_database",
]
