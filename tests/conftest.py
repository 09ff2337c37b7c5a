from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from aggregator.config import Settings, settings_from
from aggregator.service import INGESTER
from aggregator.storage import Storage
from aggregator.web import make_app

from helpers import SEEDS, Daemon, FakeClock, free_port


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Locally a test lacking a system tool skips with its reason; on CI
    everything must run, so there a skip is a failure."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped on CI, where nothing may be: {report.longrepr}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "seeds"
    shutil.copytree(SEEDS, folder)
    # Fixed modification times in page order, as a person saving them would.
    for n, path in enumerate(sorted(folder.iterdir())):
        stamp = datetime(2026, 11, 20, 8, n, tzinfo=timezone.utc).timestamp()
        os.utime(path, (stamp, stamp))
    return folder


@pytest.fixture
def make_settings(tmp_path: Path, seed_dir: Path, database_url: str) -> Callable[..., Settings]:
    def make(**values) -> Settings:
        defaults = {
            "seeds.dir": str(seed_dir),
            "database.url": database_url,
            "feeds.export_dir": "export",
            "server.base_url": "http://feeds.example.test",
        }
        return settings_from({**defaults, **values}, tmp_path)

    return make


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def storage(settings: Settings) -> Iterator[Storage]:
    store = Storage(settings.database_url)
    yield store
    store.close()


@pytest.fixture
async def client(aiohttp_client, settings, clock):
    """The real app after one scan of the seeds, without its scheduler."""
    app = make_app(settings, schedule=False, clock=clock)
    client = await aiohttp_client(app)
    await app[INGESTER].scan()
    return client


@pytest.fixture
def daemon(tmp_path, seed_dir) -> Iterator[Daemon]:
    """`aggregator serve` as a subprocess on a copy of the seeds, killed if a test leaves it running."""
    running = Daemon(tmp_path, seed_dir)
    yield running
    if running.process and running.process.poll() is None:
        running.process.kill()
        running.process.wait()


@pytest.fixture
async def served(aiohttp_client, make_settings, clock):
    """The real app on a loopback port, its links pointing at that port."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = make_app(make_settings(**{"server.base_url": base}), schedule=False, clock=clock)
    client = await aiohttp_client(app, server_kwargs={"port": port})
    await app[INGESTER].scan()
    return client, base


# --- PostgreSQL: an external server named by AGGREGATOR_TEST_DATABASE_URL, or
# a real one the suite starts itself from the pgserver package.

TEST_DATABASE_ENV = "AGGREGATOR_TEST_DATABASE_URL"


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    external = os.environ.get(TEST_DATABASE_ENV)
    if external:
        yield external
        return
    try:
        import pgserver
    except ImportError as error:
        pytest.skip(f"pgserver is not installed ({error}); `make test` installs it")
    # Not under pytest's temporary folders: pytest prunes old ones while
    # another run may still use them, and PostgreSQL shuts down when its lock
    # files disappear.
    data = Path(tempfile.mkdtemp(prefix="aggregator-test-pg-"))
    server = pgserver.get_server(data, cleanup_mode="stop")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    yield uri.replace("postgresql://", "postgresql+psycopg://", 1)
    server.cleanup()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_admin_url, request) -> Iterator[str]:
    """A fresh database on the test server for one test."""
    import sqlalchemy

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[-50:]
    admin = sqlalchemy.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = sqlalchemy.engine.make_url(postgres_admin_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as connection:
        connection.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(request) -> str:
    """The store of a test: an SQLite file, or with `both_databases` also a
    migrated PostgreSQL database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return "sqlite:///data/test.db"
    return request.getfixturevalue("postgresql_url_migrated")



@pytest.fixture
def postgresql_url_migrated(postgres_url) -> str:
    Storage(postgres_url, migrate=True).close()
    return postgres_url
