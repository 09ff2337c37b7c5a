"""Hostile files, a full export disk, swapped files and a service stopped in
the middle of a huge page: bounded work, nothing read from outside the seed
folder, feeds that always catch up."""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aggregator.cache import FeedCache
from aggregator.errors import SeedError
from aggregator.ingest import run_once
from aggregator.names import MAX_SLUG_CHARS, clean_tag, tag_slug
from aggregator.publish import FeedSpec, rendered
from aggregator.scheduler import watched_folders
from aggregator.service import CACHE, INGESTER
from aggregator.storage import Storage
from aggregator.web import make_app

from helpers import SEEDS, TAG_PAGE, Daemon, get, run, write_seed


def tag_page(tag: str, title: str) -> str:
    return (f"Contents tagged with {tag}\n\n  • {title}\n\n"
            f"    A story nobody has told before, about {title}, long enough to stand apart …\n")


def sources(storage: Storage) -> dict[str, tuple[str, str | None]]:
    return {path: (source.status, source.reason) for path, source in storage.sources().items()}


# --- tags no file system or page can hold ------------------------------------------


def test_long_tag_names_get_bounded_unique_slugs():
    a, b = "Talks " + "very " * 40 + "long A", "Talks " + "very " * 40 + "long B"
    assert len(tag_slug(a)) <= MAX_SLUG_CHARS and len(tag_slug(b)) <= MAX_SLUG_CHARS
    assert tag_slug(a) != tag_slug(b) and tag_slug(a) == tag_slug(a)
    assert tag_slug("Idlib") == "idlib"


@pytest.mark.parametrize("name", ["\u200b", " \u200b\u200c ", "\x07", "“ ”".strip("“”"), "x" * 101])
def test_invisible_empty_and_run_on_names_are_no_tags(name):
    assert clean_tag(name) is None


def test_clean_tag_keeps_what_shows():
    assert clean_tag(" Côte\u200b d'Ivoire\t ") == "Côte d'Ivoire"


async def test_a_tag_too_long_for_a_file_name_keeps_every_feed_fresh(client, settings):
    """A tag whose slug named no file (ENAMETOOLONG) stopped every export and
    every later refresh of the served feeds."""
    long_tag = "Negotiations " + "and talks " * 8  # 92 characters of words
    assert len(tag_slug(long_tag)) == MAX_SLUG_CHARS
    write_seed(settings.seeds_dir, "040_long.txt", tag_page(long_tag, "Talks about talks go on"))
    write_seed(settings.seeds_dir, "041_huge.txt", tag_page("word " * 200_000, "A page with a megabyte of tag"))
    report = await client.app[INGESTER].scan()
    assert report.new_items == 2 and client.app[INGESTER].export_error is None
    slug = tag_slug(long_tag)
    assert (settings.feeds_export_dir / "tags" / f"{slug}.atom").exists()
    assert (await client.get(f"/feeds/tags/{slug}.atom")).status == 200
    index = await (await client.get("/")).read()
    assert len(index) < 100_000  # the megabyte "tag" is not one
    assert (await client.get("/readyz")).status == 200


# --- the export disk ---------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[bool]:
    """A real tmpfs of `size` at the folder while inside, when this user may
    mount one (root may): whether it is there."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True).returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path) -> Callable[[], None]:
    """Fill the tmpfs at the folder to its last block; returns the function
    that makes room again (and grows the disk)."""
    with contextlib.suppress(OSError), open(folder / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()

    def clear() -> None:
        (folder / "filler").unlink()
        subprocess.run(["mount", "-o", "remount,size=64m", str(folder)], check=True)

    return clear


@contextlib.contextmanager
def export_disk(folder: Path):
    """A real 64 KiB tmpfs at the folder (as root), to fill; elsewhere the
    same fault made by a file standing where the folder should be. Yields a
    function that clears the fault."""
    with tmpfs(folder, "64k") as mounted:
        if mounted:
            yield fill(folder)
            return
        blocked = folder.with_name(folder.name + ".moved")
        folder.rename(blocked)
        folder.write_text("a file where the export folder should be")

        def clear() -> None:
            folder.unlink()
            blocked.rename(folder)

        yield clear


def test_a_full_database_disk_fails_its_files_and_loses_nothing(tmp_path, clock):
    """Files share a transaction, and its commit is what meets the full disk:
    each file is then tried alone and recorded as failed with the reason,
    what was stored before stays, and once there is room the next scan
    stores every file once."""
    seeds, disk = tmp_path / "seeds", tmp_path / "disk"
    seeds.mkdir()
    first, *rest = sorted(SEEDS.iterdir())
    shutil.copy(first, seeds)
    with tmpfs(disk, "8m") as mounted:
        if not mounted:
            pytest.skip("a full database disk is a real tmpfs, and only root may mount one (CI runs as root)")
        with Storage(f"sqlite:///{disk / 'store.db'}") as store:
            run_once(store, seeds, clock=clock)
            before = {item.guid: item.title for item in store.all_items()}
            assert before
            clear = fill(disk)
            for path in rest:
                shutil.copy(path, seeds)
            report = run_once(store, seeds, clock=clock)
            assert {result.path: result.status for result in report.files} == {path.name: "failed" for path in rest}
            assert all("database or disk is full" in result.reason for result in report.files)
            assert {item.guid: item.title for item in store.all_items()} == before
            clear()
            report = run_once(store, seeds, clock=clock)
            assert sorted(result.path for result in report.files) == [path.name for path in rest]
            assert len(store.all_items()) == 30
            assert before.items() <= {item.guid: item.title for item in store.all_items()}.items()
            assert {source.status for source in store.sources().values()} == {"ok"}


async def test_after_a_full_export_disk_the_feeds_catch_up(client, settings):
    """The served feeds never wait for the export; a failed export is shown on
    / and /readyz, and the next scan writes the feeds once the disk has room."""
    ingester = client.app[INGESTER]
    with export_disk(settings.feeds_export_dir) as clear:
        write_seed(settings.seeds_dir, "040_new.txt", TAG_PAGE.format(title="A story written to a full disk"))
        report = await ingester.scan()
        assert report.new_items == 1
        served = await (await client.get("/feeds/all.atom")).text()
        assert "A story written to a full disk" in served  # served at once, export or not
        ready = await client.get("/readyz")
        reason = (await ready.json())["reason"]
        assert ready.status == 503 and reason.startswith(f"cannot write the feeds to {settings.feeds_export_dir}")
        assert "The feeds are behind the data" in await (await client.get("/")).text()
        again = await ingester.scan()  # still full: still behind, still said
        assert again.files_changed == 0 and ingester.export_error
        clear()
        await ingester.scan()  # no data changed, but the export is owed
        assert ingester.export_error is None
        assert (await client.get("/readyz")).status == 200
        exported = (settings.feeds_export_dir / "all.atom").read_text()
        assert "A story written to a full disk" in exported


# --- files that are no files ---------------------------------------------------------


def test_a_file_swapped_for_a_fifo_is_recorded_not_waited_for(storage, settings):
    path = settings.seeds_dir / "040_fifo.txt"
    path.write_text(TAG_PAGE.format(title="A story before the swap"))
    run_once(storage, settings.seeds_dir)
    path.unlink()
    os.mkfifo(path)
    started = time.monotonic()
    report = run_once(storage, settings.seeds_dir)
    assert time.monotonic() - started < 10
    assert report.files_changed == 1
    assert sources(storage)["040_fifo.txt"] == ("skipped", "a FIFO, not a file")
    assert any(item.title == "A story before the swap" for item in storage.all_items())  # what it gave stays


def test_a_symlink_to_a_file_outside_is_never_read(storage, settings, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text(TAG_PAGE.format(title="A secret from outside the seed folder"))
    (settings.seeds_dir / "040_link.txt").symlink_to(outside)
    report = run_once(storage, settings.seeds_dir)
    assert report.new_items == 30
    status, reason = sources(storage)["040_link.txt"]
    assert status == "skipped" and reason.startswith("a symbolic link: not followed")
    assert not any("secret" in item.title for item in storage.all_items())


def test_a_file_swapped_for_a_link_between_listing_and_reading_is_not_followed(settings, tmp_path):
    from aggregator.seeds import DEFAULT_MAX_FILE_BYTES, Listing, read_seed

    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    path = settings.seeds_dir / "040_swap.txt"
    path.write_text("a page")
    [seed] = [s for s in Listing(settings.seeds_dir) if s.rel == "040_swap.txt"]
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(SeedError, match="symbolic link"):
        read_seed(seed, DEFAULT_MAX_FILE_BYTES)


def test_a_file_over_the_size_limit_is_skipped_with_the_reason(storage, settings):
    limit = max(path.stat().st_size for path in settings.seeds_dir.iterdir()) + 100  # every seed fits
    big = settings.seeds_dir / "040_big.txt"
    big.write_text(TAG_PAGE.format(title="A story in a huge file") + "x" * limit)
    report = run_once(storage, settings.seeds_dir, max_file_bytes=limit)
    status, reason = sources(storage)["040_big.txt"]
    assert status == "skipped" and reason.startswith(f"too large: over {limit} bytes (seeds.max_file_bytes)")
    assert report.new_items == 30 and all(item.title != "A story in a huge file" for item in storage.all_items())


def test_file_names_that_are_not_utf8_or_hold_newlines_are_shown_escaped(storage, settings, caplog):
    folder = os.fsencode(settings.seeds_dir)
    with open(os.path.join(folder, b"caf\xe9.txt"), "w") as handle:
        handle.write(TAG_PAGE.format(title="A story in a Latin-1 named file"))
    (settings.seeds_dir / "forged\n2026-01-01 INFO all is well.txt").write_text(
        TAG_PAGE.format(title="A story in a file with a newline in its name"))
    with caplog.at_level(logging.INFO):
        report = run_once(storage, settings.seeds_dir)
    assert report.new_items == 32
    rows = sources(storage)
    assert rows["caf\\xe9.txt"][0] == "ok"
    assert rows["forged\\n2026-01-01 INFO all is well.txt"][0] == "ok"
    assert not any("\n" in record.getMessage() for record in caplog.records)


async def test_a_page_served_while_an_odd_name_exists_answers(client, settings):
    folder = os.fsencode(settings.seeds_dir)
    with open(os.path.join(folder, b"\xff\xfe.txt"), "w") as handle:
        handle.write(TAG_PAGE.format(title="A story in a file named by two bad bytes"))
    os.utime(os.path.join(folder, b"\xff\xfe.txt"), (0, time.time() - 60))  # settled
    assert (await client.app[INGESTER].scan()).new_items == 1
    assert (await client.get("/")).status == 200
    assert (await client.get("/status.json")).status == 200


def test_a_seed_folder_that_cannot_be_listed_marks_nothing_missing(storage, settings):
    run_once(storage, settings.seeds_dir)
    moved = settings.seeds_dir.with_name("moved")
    settings.seeds_dir.rename(moved)
    try:
        with pytest.raises(SeedError, match="cannot list the seed folder"):
            run_once(storage, settings.seeds_dir)
    finally:
        moved.rename(settings.seeds_dir)
    assert {status for status, _ in sources(storage).values()} == {"ok"}


def test_the_watcher_does_not_follow_folder_links(tmp_path):
    (tmp_path / "seeds" / "sub").mkdir(parents=True)
    (tmp_path / "seeds" / "usr").symlink_to("/usr")
    (tmp_path / "seeds" / ".git").mkdir()  # ignored, as a scan ignores it
    assert sorted(watched_folders(tmp_path / "seeds", (".*",))) == [str(tmp_path / "seeds"),
                                                                   str(tmp_path / "seeds" / "sub")]


# --- bounded work and memory ---------------------------------------------------------


def test_the_feed_cache_holds_no_more_bytes_than_its_budget():
    budget = 1024 * 1024
    cache = FeedCache(budget)
    big = rendered(b"<feed>" + b"x" * 300_000 + b"</feed>", None, "application/atom+xml")  # type: ignore[arg-type]
    for limit in range(1, 300):
        cache.put(("all", limit, 1), big)
        assert cache.size <= budget
    assert 1 <= len(cache.entries) <= 3
    cache.put("too big", rendered(b"y" * (2 * budget), None, "text/plain"))  # type: ignore[arg-type]
    assert "too big" not in cache.entries and cache.size <= budget


async def test_many_limits_and_a_large_item_stay_within_the_cache_budget(aiohttp_client, make_settings, clock):
    settings = make_settings(**{"feeds.cache_bytes": 1024 * 1024})
    write_seed(settings.seeds_dir, "040_long.txt",
               "A very long article\n\n" + "\n\n".join(f"Paragraph {n} " + "word " * 40 for n in range(800)))
    client = await aiohttp_client(make_app(settings, schedule=False, clock=clock))
    await client.app[INGESTER].scan()
    cache = client.app[CACHE]
    for limit in range(1, 120):
        response = await client.get(f"/feeds/all.atom?limit={limit}")
        assert response.status == 200
        assert cache.size <= settings.feeds_cache_bytes
    assert len(await (await client.get("/feeds/all.atom?limit=31")).read()) > 150_000


async def test_a_feed_the_cache_let_go_is_not_kept_alive_elsewhere(client):
    """Nothing but the cache holds rendered bytes (the headers made for a
    feed are kept by its validators, not by the feed)."""
    cache = client.app[CACHE]
    assert (await client.get("/feeds/all.atom?limit=3")).status == 200
    (key,) = [key for key in cache.entries if isinstance(key[0], FeedSpec) and key[1:] == (3, 1)]
    held = weakref.ref(cache.entries[key])
    cache.invalidate()
    gc.collect()
    assert held() is None


def test_long_articles_leave_the_ingest_within_its_memory_bounds(tmp_path):
    """Dedup keeps words, shingles and topic counts of the texts it compares
    within budgets by size: kept 1 024 at a time whatever their length, 30
    articles of 190 000 characters took an ingest to 344 MB at its peak."""
    rng = random.Random(5)
    vocabulary = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
                  for _ in range(20_000)]
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    for n in range(30):
        paragraphs = [" ".join(rng.choice(vocabulary) for _ in range(80)).capitalize() + "."
                      for _ in range(320)]
        (seeds / f"article{n:02}.txt").write_text(f"Long article number {n} about harbour ferries\n\n"
                                                  + "\n\n".join(paragraphs) + "\n")
    measured = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(f"""
            from pathlib import Path
            from aggregator.ingest import run_once
            from aggregator.storage import Storage
            with Storage("sqlite:///{tmp_path / 'store.db'}") as store:
                print(run_once(store, Path("{seeds}")).new_items)
            # The peak of this process's own memory: getrusage's maximum
            # carries the parent's over fork and exec.
            status = Path("/proc/self/status").read_text().splitlines()
            print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024)
        """)], capture_output=True, text=True, check=True)
    stored, peak_mb = map(int, measured.stdout.split())
    assert stored == 30
    assert peak_mb < 250, f"peak RSS {peak_mb} MB"  # about 165 MB here


def test_a_listing_of_many_items_costs_time_in_proportion(storage, settings, tmp_path):
    """Dedup within a page looks items up by key, as against the store: twice
    the items, about twice the time, not four times."""
    def page(count: int, seed: int) -> str:
        return "\n".join(f"Story {seed}-{n} about the harbour number {n * 7919 % 10007}\n\n"
                         f"Teaser {n} of page {seed} with words {n} {n * 3} {n * 7} and more … Read more\n"
                         for n in range(count))

    timings = []
    for count, seed in ((1000, 1), (4000, 2)):
        folder = tmp_path / f"page{seed}"
        folder.mkdir()
        (folder / "listing.txt").write_text(page(count, seed))
        with Storage(f"sqlite:///{tmp_path / f'page{seed}.db'}") as store:
            started = time.process_time()
            assert run_once(store, folder).new_items == count
            timings.append(time.process_time() - started)
    assert timings[1] < 8 * timings[0], timings  # quadratic would be 16 times


# --- stopping in the middle of a huge page -------------------------------------------------


def test_sigterm_during_a_huge_page_stops_within_five_seconds_and_keeps_nothing_half(daemon):
    daemon.start()
    daemon.ready()
    (daemon.seeds / "huge.txt").write_text("\n".join(
        f"Headline {n} on a page without end, told once {n * 31 % 997}\n\n"
        f"Teaser {n}, about {n * 17} people and {n * 3} boats in the harbour, cut … Read more\n"
        for n in range(40_000)))
    time.sleep(3)  # settled, picked up, and tens of seconds of work ahead
    daemon.process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert daemon.process.wait(timeout=10) == 0
    assert time.monotonic() - stopped < 5, daemon.log.read_text()
    assert "stopping with a file half ingested" in daemon.log.read_text()
    items = run(daemon.config, "items", "--json")
    assert len(json.loads(items.stdout)) == 30, "nothing of the abandoned page is kept"
    assert "huge.txt" not in run(daemon.config, "sources").stdout  # read again on the next start


def test_idle_connections_past_the_descriptor_limit_leave_healthz_answering(daemon):
    daemon.start(open_files=256)
    daemon.ready()
    idle = []
    try:
        for _ in range(400):  # more than the process has descriptors for
            connection = socket.create_connection(("127.0.0.1", daemon.port))
            idle.append(connection)
        assert get(f"{daemon.base}/healthz", 10) == b"ok\n"
        assert len(daemon.feed("/feeds/all.atom").entries) == 30
    finally:
        for connection in idle:
            connection.close()
    assert daemon.log.read_text().count("out of system resource") <= 1
    assert daemon.stop() == 0


# --- a slow writer, a replaced database --------------------------------------------------


def test_a_slowly_written_listing_leaves_exactly_its_final_stories(settings, tmp_path):
    """Read after each pause of its writer: every cut version was ingested,
    and the stories of the final file are all that is left of it."""
    stories = [(f"Harbour story number {n} about the ferries",
                f"The ferry company said on day {n} that sailings to the islands will change again, "
                f"with {n * 3} crossings a week and new fares for cars and foot passengers … Read more\n")
               for n in range(8)]
    final = "\n".join(f"{title}\n\n{teaser}" for title, teaser in stories)
    path = settings.seeds_dir / "040_slow.txt"
    with Storage(f"sqlite:///{tmp_path / 'slow.db'}") as storage:
        run_once(storage, settings.seeds_dir)
        baseline = len(storage.all_items())
        for end in range(120, len(final), 170):  # cut anywhere, mid-word too
            path.write_text(final[:end])
            run_once(storage, settings.seeds_dir)
        path.write_text(final)
        run_once(storage, settings.seeds_dir)
        slow = sorted(item.title for item in storage.all_items())
    with Storage(f"sqlite:///{tmp_path / 'once.db'}") as storage:
        run_once(storage, settings.seeds_dir)
        assert sorted(item.title for item in storage.all_items()) == slow
    assert len(slow) == baseline + 8


def test_a_listing_saved_again_with_new_stories_keeps_the_old_ones(storage, settings):
    """Content replaced, not grown: the stories it no longer lists stay."""
    path = settings.seeds_dir / "040_listing.txt"
    write_seed(settings.seeds_dir, path.name, tag_page("Idlib", "A story listed on Monday"), minute=10)
    run_once(storage, settings.seeds_dir)
    write_seed(settings.seeds_dir, path.name, tag_page("Idlib", "A story listed on Tuesday"), minute=20)
    run_once(storage, settings.seeds_dir)
    titles = {item.title for item in storage.all_items()}
    assert {"A story listed on Monday", "A story listed on Tuesday"} <= titles


async def test_a_database_file_replaced_while_running_is_noticed(aiohttp_client, make_settings, clock, tmp_path):
    settings = make_settings(**{"database.url": f"sqlite:///{tmp_path / 'live.db'}"})
    client = await aiohttp_client(make_app(settings, schedule=False, clock=clock))
    await client.app[INGESTER].scan()
    assert (await client.get("/readyz")).status == 200
    (tmp_path / "live.db").rename(tmp_path / "elsewhere.db")
    (tmp_path / "live.db").write_bytes((tmp_path / "elsewhere.db").read_bytes())
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "was deleted or replaced while in use" in (await ready.json())["reason"]
    write_seed(settings.seeds_dir, "040_new.txt", TAG_PAGE.format(title="A story no one would read"))
    await client.app[INGESTER].scan_logged()
    assert "was deleted or replaced" in client.app[INGESTER].last_error


# --- cheap to ask -----------------------------------------------------------------------


async def test_pages_are_rendered_once_per_data_version_and_answer_304s(client, settings):
    cache = client.app[CACHE]
    first = await client.get("/tags/idlib")
    misses = cache.misses
    again = await client.get("/tags/idlib", headers={"If-None-Match": first.headers["ETag"]})
    assert (again.status, cache.misses) == (304, misses)
    assert first.headers["Cache-Control"] == "no-cache" and first.content_type == "text/html"
    write_seed(settings.seeds_dir, "040_new.txt", TAG_PAGE.format(title="A story for the tag page"))
    await client.app[INGESTER].scan()
    fresh = await client.get("/tags/idlib", headers={"If-None-Match": first.headers["ETag"]})
    assert fresh.status == 200 and "A story for the tag page" in await fresh.text()


async def test_a_change_renders_only_the_feeds_whose_entries_changed(client, settings):
    rendered_now = []
    ingester = client.app[INGESTER]
    ingester.observers.append(lambda report, feeds: rendered_now.append(feeds))
    write_seed(settings.seeds_dir, "040_assad.txt", tag_page("Assad", "A story only the Assad tag lists"))
    await ingester.scan()
    names = sorted({spec.name for spec in rendered_now[-1]})
    assert names == ["all", "tags/assad"] and len(rendered_now[-1]) == 6
    exported = (settings.feeds_export_dir / "tags" / "assad.atom").read_text()
    assert "A story only the Assad tag lists" in exported
    served = await (await client.get("/feeds/tags/idlib.atom")).text()  # not rendered by the scan: on demand
    assert served == (settings.feeds_export_dir / "tags" / "idlib.atom").read_text()
    await ingester.scan()  # nothing changed: nothing rendered
    assert rendered_now[-1] is None


def test_a_client_trickling_its_headers_is_closed(daemon):
    """No request ever completes: the idle timer, which no partial header
    resets, closes the connection (slowloris holds no descriptor for long)."""
    daemon.start()
    daemon.ready()
    with socket.create_connection(("127.0.0.1", daemon.port)) as trickler:
        trickler.sendall(b"GET /feeds/all.atom HTTP/1.1\r\n")
        trickler.settimeout(1)
        closed = False
        for n in range(40):  # a header line a second, for at most 40 s
            try:
                trickler.sendall(f"X-Trickle-{n}: 1\r\n".encode())
                closed = trickler.recv(100) == b""
            except TimeoutError:
                continue
            except OSError:
                closed = True
            if closed:
                break
        assert closed, "a connection that never finished its headers was kept open"
    assert daemon.stop() == 0


def vm_rss_mb(pid: int) -> float:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_the_served_process_stays_within_the_cache_budget_whatever_limits_are_asked(tmp_path, seed_dir):
    """RSS, not just the cache's own count: 300 distinct ?limit= values of a
    feed holding a 150 KB item (each answer 150-300 KB, and its gzip) grow
    the process by less than the budget and a fixed overhead."""
    daemon = Daemon(tmp_path, seed_dir)
    daemon.config.write_text(daemon.config.read_text().replace("[feeds]\n", "[feeds]\ncache_bytes = 2097152\n"))
    write_seed(seed_dir, "040_long.txt", "A very long article\n\n"
               + "\n\n".join(f"Paragraph {n} " + "word " * 40 for n in range(700)), minute=59)
    daemon.start()
    try:
        daemon.ready()
        for limit in range(1, 21):  # the allocator's arenas and the renderer's first use
            get(f"{daemon.base}/feeds/all.atom?limit={limit}", 30)
        before = vm_rss_mb(daemon.process.pid)
        for limit in range(21, 321):
            get(f"{daemon.base}/feeds/all.atom?limit={limit}", 30)
        grown = vm_rss_mb(daemon.process.pid) - before
        assert grown < 2 + 20, f"RSS grew {grown:.0f} MB"  # the budget, and 20 MB for the rest
    finally:
        daemon.stop()
