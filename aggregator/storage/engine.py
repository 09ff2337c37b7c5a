"""Engines, and the one place that chooses per database: each backend module
(`sqlite`, `postgresql`) offers the same five functions, and nothing else in
the store names a database."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from sqlalchemy import Table
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.sql.dml import Insert

from aggregator.errors import StorageError, first_line

BACKENDS = ("sqlite", "postgresql")


def masked(value: str) -> str:
    """A URL as it may be shown: never its password, even when it does not parse."""
    scheme, sep, rest = value.partition("://")
    if sep and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else value
    return value


def database_url(value: str | URL, base: Path | None = None) -> URL:
    """Parse and check a database URL, once. A relative SQLite path is taken
    relative to `base` (the config file's folder)."""
    if isinstance(value, URL):
        url = value
    else:
        try:
            url = make_url(value)
        except (ArgumentError, ValueError):  # a port that is no number is a ValueError
            raise StorageError(f"{masked(value)!r} is not a valid SQLAlchemy URL") from None
    if url.get_backend_name() not in BACKENDS:
        raise StorageError(f"{url.render_as_string(hide_password=True)!r}: the store runs on "
                           f"{' or '.join(BACKENDS)}")
    if base is not None and url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database).expanduser()
        if not path.is_absolute():
            url = url.set(database=str((base / path).resolve()))
    return url


def missing_database(url: URL) -> str | None:
    """Why there is no database at the URL yet, when it is an SQLite file
    that does not exist (opening it would create it); else None."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        path = Path(url.database)
        if not path.exists():
            return f"no database at {path} yet"
    return None


def backend(name: str) -> ModuleType:
    """The module of everything specific to one database."""
    return importlib.import_module(f"aggregator.storage.{name}")


def make_engine(url: str | URL) -> Engine:
    parsed = database_url(url)
    return backend(parsed.get_backend_name()).make_engine(parsed)


def insert_if_absent(dialect_name: str, table: Table) -> Insert:
    """Insert rows not there yet: the database, not a lookup, decides."""
    return backend(dialect_name).insert_if_absent(table)


def reason_of(error: SQLAlchemyError) -> str:
    """The driver's own first line: what went wrong, without SQLAlchemy's wrapping."""
    return first_line(getattr(error, "orig", None) or error)


class IngestLock:
    """Held by the one process that ingests into a database: a file lock
    beside an SQLite file, a session-level advisory lock on PostgreSQL. The
    operating system or the server releases it when the process dies."""

    def __init__(self, release: Callable[[], None] | None):
        self._release = release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> IngestLock:
        return self

    def __exit__(self, *_exc) -> None:
        self.release()
