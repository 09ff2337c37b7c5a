"""What tests share besides fixtures: the clock they move by hand, writing
seed files, reading feeds back, the service as a subprocess, and the parse
cases (each input file beside its expected result)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest
from aiohttp import web

from aggregator.errors import SeedError
from aggregator.model import Page
from aggregator.read import read_page
from aggregator.service import INGESTER
from aggregator.web import make_app

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DATA = ROOT / "tests" / "data"
DEFAULT_MTIME = "2026-11-21T12:00:00+00:00"
BASE = "http://feeds.example.test"  # server.base_url of the test settings


class FakeClock:
    """The clock is outside the process: tests move it by hand."""

    def __init__(self, start: datetime = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float = 60) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def write_seed(folder: Path, name: str, text: str, minute: int = 30) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    stamp = datetime(2026, 11, 20, 9, minute, tzinfo=timezone.utc).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Runs a test on an SQLite file and on a migrated PostgreSQL database (the
# `database_url` fixture in conftest.py).
both_databases = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def seed_page(prefix):
    path = next((ROOT / "seeds").glob(f"{prefix}_*.txt"))
    return read_page(path.read_bytes(), datetime(2026, 11, 21, tzinfo=timezone.utc))


async def fetch_feed(client, path, count=None):
    response = await client.get(path)
    assert response.status == 200, await response.text()
    body = await response.read()
    feed = feedparser.parse(body)
    assert not feed.bozo, feed.get("bozo_exception")
    if count is not None:
        assert len(feed.entries) == count
    return response, body, feed


# --- the service as a subprocess -----------------------------------------------

TAG_PAGE = ("Contents tagged with Idlib\n\n  • {title}\n\n"
            "    A story that nobody has seen before, about {title}, long enough to be told apart …\n")


def run(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aggregator", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout)


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_for(predicate, seconds: float, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


class Daemon:
    """`aggregator serve` in a subprocess, on its own port and files."""

    def __init__(self, tmp_path: Path, seeds: Path, extra: str = ""):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp_path / "config.toml"
        self.seeds = seeds
        self.log = tmp_path / "serve.log"
        self.write_config(extra)
        self.process: subprocess.Popen | None = None

    def write_config(self, extra: str = "", title: str = "Test feeds") -> None:
        self.config.write_text(
            f'[seeds]\ndir = "{self.seeds}"\ninterval_seconds = 3600\n'
            f'[database]\nurl = "sqlite:///state/agg.db"\n'
            f'[server]\nport = {self.port}\nbase_url = "{self.base}"\n'
            f'[feeds]\nexport_dir = "public"\ntitle = "{title}"\n'
            f'[daemon]\npid_file = "state/agg.pid"\nlog_file = "state/agg.log"\n{extra}')

    def start(self, env: dict | None = None, *args: str, open_files: int | None = None) -> subprocess.Popen:
        """`open_files`: the soft limit of descriptors (RLIMIT_NOFILE), as a unit's LimitNOFILE sets it."""
        def limit() -> None:
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        with open(self.log, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aggregator", "--config", str(self.config), *args, "serve"],
                stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, **(env or {})}, preexec_fn=limit)
        return self.process

    def ready(self, seconds: float = 20) -> None:
        def answers():
            try:
                return json.loads(get(f"{self.base}/readyz", 1))["ready"]
            except OSError:
                return False
        assert wait_for(answers, seconds), self.log.read_text()

    def feed(self, path: str):
        return feedparser.parse(get(self.base + path))

    def stop(self) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
        return self.process.returncode if self.process else 0


# --- parse cases -----------------------------------------------------------------

# Folders of inputs whose expectations lie in a folder of their own, as the
# inputs are also read as a whole (shipped seeds; the labelled web corpus).
EXPECTATIONS_APART = {ROOT / "seeds": DATA / "seeds", DATA / "web": DATA / "web-pages"}


def cases() -> list[tuple[Path, Path]]:
    """(input, expectation) pairs: the shipped seeds, the pages of the web
    corpus, and every file in tests/data/pages beside its `<name>.expected.json`."""
    pairs = [(p, expected / f"{p.name}.expected.json")
             for inputs, expected in EXPECTATIONS_APART.items() for p in sorted(inputs.iterdir()) if p.is_file()]
    pairs += [(p, p.with_name(f"{p.name}.expected.json")) for p in sorted((DATA / "pages").glob("*.txt"))]
    return pairs


def page_json(page: Page, mtime: str) -> dict:
    return {
        "mtime": mtime,
        "layout": page.layout,
        "tag": page.tag,
        "items": [
            {
                "title": item.title,
                "summary": item.summary,
                "content": item.content,
                "published": item.published.isoformat() if item.published else None,
                "tags": list(item.tags),
                "link": item.link,
            }
            for item in page.items
        ],
    }


def parse_case(source: Path, mtime: str) -> dict:
    """What a page reads as, or the one-line reason it holds no items."""
    try:
        page = read_page(source.read_bytes(), datetime.fromisoformat(mtime), source.name)
    except SeedError as error:
        return {"mtime": mtime, "status": str(error.status), "error": str(error)}
    return page_json(page, mtime)


@contextlib.contextmanager
def app_in_thread(settings, port: int) -> Iterator[None]:
    """The real app, its seeds scanned once, serving on a loopback port from
    a thread of its own, so that plain blocking clients (hypothesis's) drive it."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    runner: list[web.AppRunner] = []

    async def start() -> None:
        app = make_app(settings, schedule=False)
        runner.append(web.AppRunner(app, access_log=None))
        await runner[0].setup()
        await app[INGESTER].scan()
        await web.TCPSite(runner[0], "127.0.0.1", port).start()
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(60), "the app did not start"
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(runner[0].cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
