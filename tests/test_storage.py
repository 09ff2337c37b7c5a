"""Schema migrations and the single-ingester lock, on SQLite and PostgreSQL."""

import subprocess
import sys

import pytest
import sqlalchemy

from aggregator.errors import StorageError
from aggregator.storage import Storage
from aggregator.storage.migrate import head

from helpers import both_databases

HEAD = head()  # the newest revision, as Alembic reads it from the migrations


def test_sqlite_schema_is_created_and_upgraded_on_open(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    storage = Storage(url)
    current, head = storage.schema_revisions()
    assert current == head == HEAD
    assert storage.data_version() == 0
    storage.close()


def _columns(url: str, table: str) -> set[str]:
    engine = sqlalchemy.create_engine(url)
    try:
        return {column["name"] for column in sqlalchemy.inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _tag_feeds(storage: Storage) -> dict[str, list[str]]:
    return {tag.slug: [item.guid for item in storage.newest_items(100, 0, (tag.slug,))]
            for tag, _count in storage.tags()}


def test_an_older_sqlite_schema_is_upgraded_keeping_its_items(tmp_path, seed_dir, clock):
    from alembic import command

    from aggregator.ingest import run_once
    from aggregator.storage.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    storage = Storage(url)
    run_once(storage, seed_dir, clock=clock)
    before = {item.guid for item in storage.all_items()}
    last_change = max(item.updated for item in storage.all_items())
    feeds = _tag_feeds(storage)
    with storage.engine.begin() as connection:  # back to the first schema, as an old install has it
        command.downgrade(alembic_config(connection), "0001")
    storage.close()
    assert "simhash" not in _columns(url, "fingerprints")
    assert "published" not in _columns(url, "item_tags")
    storage = Storage(url)
    try:
        assert storage.schema_revisions() == (HEAD, HEAD)
        assert {item.guid for item in storage.all_items()} == before
        assert _tag_feeds(storage) == feeds  # every tag's dates filled in from its items
        assert storage.data_changed_at() == last_change  # the newest change, read back from the items
        (seed_dir / "copy.txt").write_bytes(next(seed_dir.glob("000_*")).read_bytes())
        report = run_once(storage, seed_dir, clock=clock)
        assert report.files_changed == 1 and report.new_items == 0  # found again by its old keys
    finally:
        storage.close()


@both_databases
def test_the_migrated_schema_is_the_one_the_code_declares(storage):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from aggregator.storage import Base

    def declared(name, kind, _parent):
        # The search index is each database's own (an FTS5 table and its
        # shadow tables; a tsvector column and its GIN index), outside the
        # declared tables by design; it is checked to be there below.
        return not (name or "").startswith(("items_search", "search_vector", "ix_items_search"))

    with storage.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": declared})
        assert compare_metadata(context, Base.metadata) == []
        inspector = sqlalchemy.inspect(connection)
        indexes = {index["name"] for index in inspector.get_indexes("item_tags")}
        if connection.dialect.name == "sqlite":
            assert "items_search" in inspector.get_table_names()
        else:
            assert "search_vector" in {column["name"] for column in inspector.get_columns("items")}
            assert "ix_items_search" in {index["name"] for index in inspector.get_indexes("items")}
    assert "ix_item_tags_newest" in indexes


def test_a_written_sqlite_store_copies_its_log_into_the_file_on_a_thread(tmp_path, seed_dir, clock):
    import shutil
    import threading
    import time

    from aggregator.ingest import run_once

    database = tmp_path / "store.db"
    storage = Storage(f"sqlite:///{database}")
    try:
        assert "sqlite-checkpoint" not in {t.name for t in threading.enumerate()}  # nothing written yet
        report = run_once(storage, seed_dir, clock=clock)
        copy = tmp_path / "file-only.db"
        deadline = time.monotonic() + 10
        while True:  # the main file alone, without its log, holds what was written
            shutil.copy(database, copy)
            engine = sqlalchemy.create_engine(f"sqlite:///{copy}")
            try:
                with engine.connect() as connection:
                    count = connection.exec_driver_sql("SELECT count(*) FROM items").scalar()
            except sqlalchemy.exc.DatabaseError:
                count = 0  # not even the tables yet, or copied while a checkpoint was writing pages
            finally:
                engine.dispose()
            if count == report.new_items or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert count == report.new_items == 30
    finally:
        storage.close()
    assert "sqlite-checkpoint" not in {t.name for t in threading.enumerate()}


def test_a_schema_newer_than_known_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'future.db'}"
    Storage(url).close()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StorageError, match=r"schema \(9999\) is newer than this aggregator knows"):
        Storage(url)


def test_postgresql_waits_for_db_upgrade(postgres_url, tmp_path):
    with pytest.raises(StorageError, match="run `aggregator db upgrade`"):
        Storage(postgres_url)
    (tmp_path / "seeds").mkdir()
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\nurl = "{postgres_url}"\n')

    def db(action):
        return subprocess.run([sys.executable, "-m", "aggregator", "--config", str(config), "db", action],
                              capture_output=True, text=True, timeout=60)

    check = db("check")
    assert check.returncode == 1 and "run `aggregator db upgrade`" in check.stderr
    upgrade = db("upgrade")
    assert upgrade.returncode == 0 and upgrade.stdout == f"database schema: {HEAD} (this aggregator: {HEAD})\n"
    assert db("check").returncode == 0
    Storage(postgres_url).close()


@both_databases
def test_only_one_ingester_per_database(database_url, tmp_path, request):
    url = database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'lock.db'}"
    first, second = Storage(url), Storage(url)
    try:
        lock = first.ingest_lock()
        with pytest.raises(StorageError, match="already ingesting"):
            second.ingest_lock()
        lock.release()
        second.ingest_lock().release()
    finally:
        first.close()
        second.close()


@both_databases
def test_data_version_moves_only_when_feeds_change(storage, settings, clock):
    from aggregator.ingest import run_once

    run_once(storage, settings.seeds_dir, clock=clock)
    after_first = storage.data_version()
    assert after_first == 5  # one per file that changed something
    run_once(storage, settings.seeds_dir, clock=clock)
    assert storage.data_version() == after_first
