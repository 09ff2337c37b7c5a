"""`make bench` (`python -m bench [--quick]`): every figure is a ratio against
a floor measured in the same run on the same machine, because absolute times
do not compare across runs on shared machines."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import aiohttp

from aggregator import dedupe
from aggregator.ingest import run_once, sightings_of
from aggregator.read import kind_of, read_page
from aggregator.storage import Storage
from bench.corpus import generate, write_long_listing, write_text_pages, write_web_pages

RESULTS = Path(__file__).resolve().parent / "results"


class Scale(NamedTuple):
    """How much each step measures. The quick run is for trying a change:
    every figure, on smaller samples and fewer rounds, in about two minutes;
    the full run is the measurement."""

    files: int  # the cold ingest's pages (and the rescan's)
    sizes: tuple[int, ...]  # stores the growth is measured against
    index_files: int
    index_rounds: int
    growth_files: int
    growth_rounds: int
    serve_seconds: int  # each wrk run
    serve_rounds: int
    live_files: int  # saved while the service answers requests
    live_seconds: int  # of that ingest, at most
    long_pages: tuple[int, int]  # items on one listing page, a short and a long one


# The full run in about ten minutes, a minute and a half of it the long page:
# the million-item store alone takes two and a half to fill, so the cold
# ingest is of 4 000 files and the growth is measured at its two ends.
FULL = Scale(4_000, (10_000, 1_000_000), 300, 4, 150, 3, 2, 3, 10_000, 45, (10_000, 60_000))
QUICK = Scale(500, (10_000, 100_000), 100, 3, 100, 2, 1, 2, 300, 45, (2_000, 10_000))
PARSE_SAMPLE = 1_000  # files the parse-only rate is taken on: a rate, not a total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(func, *args):
    start = time.perf_counter()
    value = func(*args)
    return time.perf_counter() - start, value


# --- 1. cold ingest against a naive bulk insert ---------------------------------


def naive_floor(folder: Path, database: Path) -> int:
    """Read the same files, split on blank lines, bulk-insert: no parsing, no dedup."""
    db = sqlite3.connect(database)
    db.execute("CREATE TABLE chunks (file TEXT, n INTEGER, text TEXT)")
    rows = []
    for path in sorted(folder.iterdir()):
        for n, chunk in enumerate(path.read_text(encoding="utf-8").split("\n\n")):
            rows.append((path.name, n, chunk))
    db.executemany("INSERT INTO chunks VALUES (?, ?, ?)", rows)
    db.commit()
    db.close()
    return len(rows)


def parse_only(paths: list[Path]) -> dict[str, float]:
    """What ingest does before it touches the store: decode, parse,
    fingerprint and plan each page on its own. No database, no merges
    across files: the ceiling the in-process Python work allows. Items per
    second by kind of page."""
    mtime = datetime(2025, 1, 1, tzinfo=timezone.utc)
    counts: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for path in sorted(paths):
        data = path.read_bytes()
        kind = kind_of(path.name, data)
        start = time.perf_counter()
        page = read_page(data, mtime, path.name)
        count = len(dedupe.plan_page(sightings_of(page.items, mtime), {}).sightings)
        seconds[kind] = seconds.get(kind, 0.0) + time.perf_counter() - start
        counts[kind] = counts.get(kind, 0) + count
    return {kind: counts[kind] / seconds[kind] for kind in counts}


def bytes_written() -> int:
    """Bytes this process has handed to write() so far, every thread's
    (the ingest's log and the checkpointer's copies alike): Linux's count."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")


def cold_ingest(work: Path, files: int) -> dict:
    seeds = work / "seeds"
    sightings, stories = write_text_pages(seeds, files)
    floor_seconds, _ = timed(naive_floor, seeds, work / "floor.db")
    pages = sorted(seeds.iterdir())
    text_rate = parse_only(pages[:: max(1, len(pages) // PARSE_SAMPLE)])["text"]
    written = bytes_written()
    with Storage(f"sqlite:///{work / 'cold.db'}") as storage:
        seconds, report = timed(run_once, storage, seeds)
        # Then the same stories as HTML pages and feed files, saved beside:
        # each merges with what the text pages told.
        web = write_web_pages(seeds, stories, files // 10)
        web_rates = parse_only([path for path in seeds.iterdir() if path.name.startswith("web")])
        web_seconds, _ = timed(run_once, storage, seeds)
    # Closed: the log is copied back, and the file is the whole store.
    written, stored = bytes_written() - written, (work / "cold.db").stat().st_size
    rate, floor = sightings / seconds, sightings / floor_seconds
    return {"ingest_items_per_s": rate, "ingest_floor_items_per_s": floor, "ingest_ratio": rate / floor,
            "parse_only_items_per_s": text_rate, "parse_only_ratio": text_rate / floor,
            "parse_only_by_kind": {"text": text_rate, **web_rates},
            "web_ingest_items_per_s": sum(web.values()) / web_seconds, "web_sightings": web,
            "cold_items_stored": report.new_items, "cold_sightings": sightings,
            "ingest_bytes_written": written, "store_bytes": stored, "write_amplification": written / stored}


def long_page(work: Path, sizes: tuple[int, int]) -> dict:
    """The ingest rate of one listing page at two lengths, each into an empty
    store: a page's own dedup looks each item up by its keys, so the longer
    page's rate stays near the shorter one's (were it quadratic, six times the
    items would cost 36 times the time). 60 000 such items are 9 MB, within
    the default size limit of a seed file."""
    rates = {}
    for items in sizes:
        folder = work / f"long-{items}"
        size = write_long_listing(folder / "archive.txt", items)
        with Storage(f"sqlite:///{work / f'long-{items}.db'}") as storage:
            seconds, report = timed(run_once, storage, folder)
        if report.new_items != items:
            raise SystemExit(f"the {items}-item page ({size:,} bytes) gave {report.new_items} items")
        rates[items] = items / seconds
    short, long = sizes
    return {"long_page_items_per_s": rates, "long_page_ratio": rates[long] / rates[short]}


def index_cost(work: Path, files: int = 300, rounds: int = 5) -> dict:
    """What keeping the search index adds to a cold ingest: the same pages
    into a fresh store with the index written, and with its writes left out
    (the one function that writes them made to do nothing, here only), in
    turn; the best of each. Counted in the process's CPU time: the same work
    twice, and the wall clock of this shared machine put three full runs in
    a row at -16 %, +5.5 % and +25 %."""
    from aggregator.storage import search

    folder = work / "index-seeds"
    sightings = generate(folder, files, seed=7)
    writes = search.index_items
    best = {True: float("inf"), False: float("inf")}
    try:
        for round_ in range(rounds):
            for indexed in (True, False):
                search.index_items = writes if indexed else (lambda connection, ids, new=None: None)
                with Storage(f"sqlite:///{work / f'index-{round_}-{indexed}.db'}") as storage:
                    started = time.process_time()
                    run_once(storage, folder)
                    best[indexed] = min(best[indexed], time.process_time() - started)
    finally:
        search.index_items = writes
    return {"index_cost": best[True] / best[False] - 1, "index_cost_sightings": sightings}


# --- 2. growth: the ingest rate with many items already stored ------------------------


# Eight words a filler text tells, from a vocabulary of 5 000 ("w0" … "w4999")
# drawn unevenly as the words of real text are: "w0" is in about 1 in 60 items, "w4000" in 1 in 4 000.
FILLER_WORDS = " || ' ' || ".join(["'w' || (abs(random()) % (1 + abs(random()) % 5000))"] * 8)


def prefill(database: Path, count: int) -> None:
    """Store `count` distinct filler items with the rows ingest writes for each
    (title, lead, four SimHash bands with the SimHash, ten headline topic
    pairs, one tag), generated inside SQLite: a million items take a minute or
    two instead of the hours ingest would. The schema is the service's own."""
    Storage(f"sqlite:///{database}").close()
    db = sqlite3.connect(database)
    db.executescript(f"""
        PRAGMA synchronous = OFF;
        PRAGMA cache_size = -2000000;
        PRAGMA temp_store = MEMORY;
        BEGIN;
        INSERT INTO tags (id, name, key, slug)
            WITH RECURSIVE t(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM t WHERE n < 19)
            SELECT 10000 + n, 'Filler ' || n, 'filler ' || n, 'filler-' || n FROM t;
        CREATE TEMP TABLE seq AS
            WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < {count - 1})
            SELECT n FROM s;
        INSERT INTO items (id, guid, key, title, summary, content, published, updated, first_seen)
            SELECT 1000000 + n, 'urn:filler:' || n, printf('f%031d', n), 'Filler story ' || n,
                   'Filler text ' || n || ' told at the length of a teaser, some thirty words long: '
                   || {FILLER_WORDS} || '.',
                   NULL, strftime('%Y-%m-%d %H:%M:%f', '2025-01-01', printf('-%d minutes', n)),
                   '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000'
            FROM seq;
        INSERT INTO item_tags (item_id, tag_id, published)
            SELECT id, 10000 + (id - 1000000) % 20, published FROM items;
        -- The search index holds the folded words; these are ASCII already.
        INSERT INTO items_search (rowid, title, body, tags)
            SELECT id, lower(title), lower(summary), 'filler ' || ((id - 1000000) % 20) FROM items;
        CREATE TEMP TABLE kinds (kind TEXT, bytes INTEGER, banded INTEGER);
        INSERT INTO kinds VALUES ('title', 16, 0), ('lead', 16, 0), ('band0', 2, 1), ('band1', 2, 1),
            ('band2', 2, 1), ('band3', 2, 1), ('topic', 8, 0), ('topic', 8, 0), ('topic', 8, 0),
            ('topic', 8, 0), ('topic', 8, 0), ('topic', 8, 0), ('topic', 8, 0), ('topic', 8, 0),
            ('topic', 8, 0), ('topic', 8, 0);
        INSERT INTO fingerprints (item_id, kind, value, simhash)
            SELECT 1000000 + n, kind, lower(hex(randomblob(bytes))), CASE WHEN banded THEN random() END
            FROM seq, kinds;
        COMMIT;
    """)
    db.close()


def growth(work: Path, sizes: list[int], files: int = 150, rounds: int = 3) -> dict:
    """The ingest rate of a fresh folder of `files` pages into stores of each
    size; each round a new folder, round after round across the sizes, the
    best round counts (a shared machine only ever makes a round slower)."""
    folders = []
    for round_ in range(rounds):
        folder = work / f"growth-seeds-{round_}"
        folders.append((folder, generate(folder, files, seed=99 + round_)))
    for size in sizes:
        prefill(work / f"growth-{size}.db", size)
    rates: dict[int, float] = {}
    for folder, sightings in folders:
        for size in sizes:
            storage = Storage(f"sqlite:///{work / f'growth-{size}.db'}")
            seconds, _ = timed(run_once, storage, folder)
            storage.close()
            rates[size] = max(rates.get(size, 0.0), sightings / seconds)
    first, last = rates[sizes[0]], rates[sizes[-1]]
    return {"growth_rates": {str(k): v for k, v in rates.items()}, "growth_drop": 1 - last / first}


# --- 3. rescan of unchanged files -----------------------------------------------------


def bare_scan(folder: Path) -> int:
    return sum(1 for entry in os.scandir(folder) if entry.stat().st_size >= 0)


def rescan(work: Path) -> dict:
    seeds = work / "seeds"
    storage = Storage(f"sqlite:///{work / 'cold.db'}")
    run_once(storage, seeds)  # warm the page cache as the floor will find it
    # Turn about, so a busy moment of the machine falls on both alike; a
    # rescan takes a tenth of a second, and this machine's own spread over
    # ten rounds was as large as the figure's distance to its target.
    rescans, floors = [], []
    for _ in range(30):
        rescans.append(timed(run_once, storage, seeds)[0])
        floors.append(timed(bare_scan, seeds)[0])
    storage.close()
    rescan_seconds, floor_seconds = min(rescans), min(floors)
    return {"rescan_seconds": rescan_seconds, "rescan_floor_seconds": floor_seconds,
            "rescan_ratio": rescan_seconds / floor_seconds}


# --- 4-6. serving -------------------------------------------------------------------------

# The server gets one core and the load generator the other, so they do not
# fight over one; on a one-core machine both share it.
SERVER_CPU, LOAD_CPU = ("0", "1") if (os.cpu_count() or 1) > 1 else ("0", "0")


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("bench: the serving figures need wrk, the HTTP load generator "
                         "(Debian: apt-get install wrk); .ci/run installs it")
    return path


def pinned(cpu: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *command] if shutil.which("taskset") else command


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def start_service(config: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """`aggregator serve` as `make run` starts it: the command, its config and
    logging (access log on, to a file as a supervisor's journal would take it)."""
    with open(log, "ab") as stderr:
        process = subprocess.Popen(pinned(SERVER_CPU, [sys.executable, "-m", "aggregator", "--config", str(config),
                                                        "serve"]), stdout=subprocess.DEVNULL, stderr=stderr)
    port = int(next(line.split("=")[1] for line in config.read_text().splitlines() if line.startswith("port")))
    wait_for_port(port, process)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:  # ready: its first scan done
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("service not ready")


def start_bare(answers: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(pinned(SERVER_CPU, [sys.executable, "-m", "bench.serve_target", str(answers),
                                                   str(port)]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process, f"http://127.0.0.1:{port}"


def wrk_rate(url: str, headers: dict[str, str], seconds: int = 3, connections: int = 32) -> float:
    """Requests per second wrk reaches with one thread and 32 connections."""
    command = [need_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    out = subprocess.run(pinned(LOAD_CPU, [*command, url]), capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in out:
        raise RuntimeError(f"wrk saw errors from {url}:\n{out}")
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec:")))


def fetch(url: str, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), dict(response.headers)


def write_config(work: Path, name: str, database: Path, seeds: Path, port: int | None = None) -> Path:
    config = work / f"{name}.toml"
    config.write_text(f'[seeds]\ndir = "{seeds}"\ninterval_seconds = 3600\n[database]\nurl = "sqlite:///{database}"\n'
                      f'[server]\nport = {port or free_port()}\n'
                      f'[feeds]\nexport_dir = "{work / (name + "-feeds")}"\n'
                      f'[daemon]\npid_file = "{work / (name + ".pid")}"\n')
    return config


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serving(work: Path, big_store: Path, seconds: int, rounds: int = 3) -> dict:
    """Each figure against the bare handler answering the same bytes: the
    cached overall feed, its gzip, a 304, a tag feed, and the front page."""
    config = write_config(work, "serve", work / "cold.db", work / "seeds")
    service, base = start_service(config, work / "serve.log")
    try:
        tag = json.loads(subprocess.run([sys.executable, "-m", "aggregator", "--config", str(config), "tags",
                                         "--json"], capture_output=True, text=True, check=True).stdout)[0]["slug"]
        targets = {"feed": ("/feeds/all.atom", {}), "gzip": ("/feeds/all.atom", {"Accept-Encoding": "gzip"}),
                   "304": ("/feeds/all.atom", {}), "tag_feed": (f"/feeds/tags/{tag}.atom", {}), "page": ("/", {}),
                   "search_feed": ("/feeds/search.atom?q=rain+OR+storm", {})}
        answers = {}
        for name, (path, _) in targets.items():
            body, headers = fetch(base + path, {"Accept-Encoding": "identity"})
            gzipped, _ = fetch(base + path, {"Accept-Encoding": "gzip"})  # urllib does not decompress
            (work / f"{name}.body").write_bytes(body)
            (work / f"{name}.gz").write_bytes(gzipped)
            # The bare handler answers by path: the search's query string is the service's to read.
            answers[path.split("?")[0]] = {"body": str(work / f"{name}.body"), "gzip": str(work / f"{name}.gz"),
                                           "etag": headers["ETag"], "type": headers["Content-Type"]}
        targets["304"] = ("/feeds/all.atom", {"If-None-Match": answers["/feeds/all.atom"]["etag"]})
        (work / "answers.json").write_text(json.dumps(answers))
        bare, bare_base = start_bare(work / "answers.json")
        try:
            measured = {}
            for name, (path, headers) in targets.items():
                plain = {"Accept-Encoding": "identity", **headers}
                rates = best_rates([(base + path, plain), (bare_base + path, plain)], seconds, rounds)
                measured[name] = {"rps": rates[0], "floor_rps": rates[1], "ratio": rates[0] / rates[1]}
        finally:
            bare.terminate()
            bare.wait()
        log_lines = (work / "serve.log").read_bytes().count(b"\n")
    finally:
        service.terminate()
        service.wait()
    big_config = write_config(work, "big", big_store, work / "empty-seeds")
    (work / "empty-seeds").mkdir(exist_ok=True)
    big, big_base = start_service(big_config, work / "big.log")
    try:
        first_ms = asyncio.run(first_render(big_base))
        searches = asyncio.run(first_searches(big_base))
        rss = peak_rss_mb(big.pid)
    finally:
        big.terminate()
        big.wait()
    return {"serving": measured, "serve_ratio": measured["feed"]["ratio"], "serve_304_ratio": measured["304"]["ratio"],
            "serve_rps": measured["feed"]["rps"], "access_log_lines": log_lines,
            "first_render_ms": first_ms, "peak_rss_mb": rss, **searches}


def best_rates(targets: list[tuple[str, dict]], seconds: int, rounds: int = 3) -> list[float]:
    """The best requests/s of each (url, headers), taking them in turn round
    after round, so a busy moment of the machine falls on all alike."""
    best = [0.0] * len(targets)
    for _ in range(rounds):
        for n, (url, headers) in enumerate(targets):
            best[n] = max(best[n], wrk_rate(url, headers, seconds))
    return best


async def load(url: str, requests: int, concurrency: int = 16) -> list[float]:
    """Latencies in ms of `requests` GETs, `concurrency` at a time: what a
    poller sees (wrk gives rates, this each request's time)."""
    latencies: list[float] = []
    remaining = requests

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
            latencies.append((time.perf_counter() - start) * 1000)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    return latencies


async def first_render(base: str, rounds: int = 15) -> float:
    """Median time of the first request for a tag feed: each round asks for a
    page size not asked before, so it is rendered from the store."""
    times = []
    async with aiohttp.ClientSession() as session:
        for n in range(rounds):
            start = time.perf_counter()
            async with session.get(f"{base}/feeds/tags/filler-3.atom?limit={50 - n}") as response:
                await response.read()
                assert response.status == 200
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


# Kinds of query people type, each a different query every round ({n}), so
# each is answered from the store, never from the cache: over the filler's
# 5 000 words, "w4000" is in about 250 of a million items, "w100" in 6 000,
# "w0" in 15 000, "filler" in every one.
SEARCHES = {
    "rare word": lambda n: f"w{4000 + n}",
    "word": lambda n: f"w{100 + n}",
    "common word": lambda n: f"w{n}",
    "word in every item": lambda n: f"filler -w{4900 + n}",
    "two words": lambda n: f"w{20 + n} w{30 + n}",
    "phrase": lambda n: f'"story {1000 * n + 7}"',
    "either word": lambda n: f"w{3000 + n} OR w{3100 + n}",
    "word and tag": lambda n: f"w{200 + n} tag:filler-{n}",
    "word, not another": lambda n: f"w{300 + n} -w{n}",
}


async def first_searches(base: str, rounds: int = 7) -> dict:
    """Median time of a search page (the results, their count, highlights)
    asked for the first time, by kind of query and over all kinds."""
    times: dict[str, list[float]] = {kind: [] for kind in SEARCHES}
    async with aiohttp.ClientSession() as session:
        for n in range(rounds):
            for kind, make_query in SEARCHES.items():
                query = make_query(n)
                start = time.perf_counter()
                async with session.get(f"{base}/search", params={"q": query}) as response:
                    await response.read()
                    assert response.status == 200, (query, response.status)
                times[kind].append((time.perf_counter() - start) * 1000)
    return {"search_first_render_ms": statistics.median(t for kind in times.values() for t in kind),
            "search_first_render_by_kind_ms": {kind: statistics.median(t) for kind, t in times.items()}}


def during_ingest(work: Path, files: int, window: float) -> dict:
    """Feed requests while the service ingests a burst of `files` new pages:
    until every one is recorded, or for `window` seconds of the ingest (the
    ingester is as busy in its first minute as in its last; waiting for
    10 000 files took nine minutes of the bench)."""
    seeds = work / "live-seeds"
    seeds.mkdir()
    (seeds / "first.txt").write_text("First story\n\nIts text, so the feed is not empty.\n")
    config = write_config(work, "live", work / "live.db", seeds)
    service, base = start_service(config, work / "live.log")
    try:
        staging = work / "live-staging"
        generate(staging, files, seed=5)
        for path in staging.iterdir():
            path.rename(seeds / path.name)  # one burst, then the watcher ingests
        latencies: list[float] = []
        recorded = 0
        deadline = time.monotonic() + window

        async def poll() -> None:
            nonlocal recorded
            while time.monotonic() < deadline:
                latencies.extend(await load(f"{base}/feeds/all.atom", 50, concurrency=4))
                async with aiohttp.ClientSession() as session, session.get(f"{base}/status.json") as response:
                    status = await response.json()
                recorded = sum(status["files"].values()) - 1
                if recorded >= files:  # every file recorded
                    return

        asyncio.run(poll())
    finally:
        service.terminate()
        service.wait()
    latencies.sort()
    return {"p99_during_ingest_ms": latencies[int(len(latencies) * 0.99) - 1], "requests_during_ingest": len(latencies),
            "files_ingested_during": recorded}


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = [int(k) for k in results["growth_rates"]]
    left.plot(sizes, list(results["growth_rates"].values()), marker="o")
    left.set_xscale("log")
    left.set_xlabel("items already stored")
    left.set_ylabel("ingest rate (items/s)")
    left.set_title("Ingest rate against store size")
    names = ["first_render_ms", "p99_during_ingest_ms"]
    right.bar(["first render\n(median)", "p99 while\ningesting"], [results[n] for n in names])
    right.set_ylabel("ms")
    right.set_title("Request latency")
    fig.tight_layout()
    fig.savefig(path)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench")
    parser.add_argument("--quick", action="store_true",
                        help="500 files, growth up to 100 k items, shorter rounds: about two minutes")
    args = parser.parse_args()
    need_wrk()  # before ten minutes of ingest, not after
    scale = QUICK if args.quick else FULL
    sizes = list(scale.sizes)
    results: dict = {"quick": args.quick, "cpus": os.cpu_count(), "files": scale.files,
                     "date": datetime.now(timezone.utc).isoformat()}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        steps = [
            ("cold ingest", lambda: cold_ingest(work, scale.files)),
            ("rescan", lambda: rescan(work)),
            ("one long page", lambda: long_page(work, scale.long_pages)),
            ("search index", lambda: index_cost(work, scale.index_files, scale.index_rounds)),
            ("growth", lambda: growth(work, sizes, scale.growth_files, scale.growth_rounds)),
            ("serving", lambda: serving(work, work / f"growth-{sizes[-1]}.db", scale.serve_seconds,
                                        scale.serve_rounds)),
            ("serving while ingesting", lambda: during_ingest(work, scale.live_files, scale.live_seconds)),
        ]
        for name, step in steps:
            seconds, figures = timed(step)
            results.update(figures)
            print(f"{name}: done in {seconds:.0f}s", file=sys.stderr)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "latest.png")
    rows = [
        ("cold ingest", f"{results['ingest_items_per_s']:.0f} items/s",
         f"{results['ingest_ratio']:.4f} x floor", ">= 0.04"),
        ("  bytes written", f"{results['ingest_bytes_written'] / 1e6:.0f} MB",
         f"{results['write_amplification']:.1f} x the store's size", ""),
        ("  parse only (ceiling)", f"{results['parse_only_items_per_s']:.0f} items/s",
         f"{results['parse_only_ratio']:.4f} x floor", ">= 0.12"),
        ("  parse only, html", f"{results['parse_only_by_kind']['html']:.0f} items/s", "", ""),
        ("  parse only, feeds", f"{results['parse_only_by_kind']['feed']:.0f} items/s", "", ""),
        ("ingest of html and feeds", f"{results['web_ingest_items_per_s']:.0f} items/s",
         "into the cold store", ""),
        ("one long page", f"{results['long_page_items_per_s'][scale.long_pages[1]]:.0f} items/s",
         f"{results['long_page_ratio']:.2f} x at {scale.long_pages[0]:,} items", ">= 0.5"),
        ("growth", f"{sizes[0]:,} -> {sizes[-1]:,} items", f"{results['growth_drop']:.1%} slower", "<= 20%"),
        ("rescan", f"{results['rescan_seconds'] * 1000:.0f} ms", f"{results['rescan_ratio']:.1f} x scandir", "<= 3"),
        *((f"serve {name}", f"{figure['rps']:.0f} req/s", f"{figure['ratio']:.2f} x bare ({figure['floor_rps']:.0f})",
           ">= 0.9") for name, figure in results["serving"].items()),
        ("first render", f"{results['first_render_ms']:.1f} ms", f"{sizes[-1]:,} items stored", "<= 20 ms"),
        ("first search", f"{results['search_first_render_ms']:.1f} ms", f"{sizes[-1]:,} items, median", "<= 50 ms"),
        *((f"  {kind}", f"{ms:.1f} ms", "", "") for kind, ms in results["search_first_render_by_kind_ms"].items()),
        ("search index", f"{results['index_cost']:+.1%}", "to cold ingest", "<= 15%"),
        ("p99 while ingesting", f"{results['p99_during_ingest_ms']:.1f} ms",
         f"{results['files_ingested_during']:,} files ingested", "<= 50 ms"),
        ("peak RSS", f"{results['peak_rss_mb']:.0f} MB", f"{sizes[-1]:,} items stored", "<= 200 MB"),
    ]
    for row in rows:
        print(f"{row[0]:<22}{row[1]:>22}  {row[2]:<26}target {row[3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
