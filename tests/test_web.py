"""The real aiohttp app through its test client; feeds read back by feedparser."""

import asyncio
import gzip
import os
import time
from datetime import timedelta

import feedparser
import pytest
from lxml import etree

from aggregator.service import CACHE, INGESTER
from aggregator.web import make_app

from helpers import BASE, both_databases, fetch_feed, seed_page, write_seed


@pytest.mark.parametrize(
    "path,count,media_type",
    [
        ("/feeds/all.atom", 30, "application/atom+xml"),
        ("/feeds/all.rss", 30, "application/rss+xml"),
        ("/feeds/tags/idlib.atom", 10, "application/atom+xml"),
        ("/feeds/tags/idlib.rss", 10, "application/rss+xml"),
        ("/feeds/tags/assad.atom", 10, "application/atom+xml"),
        ("/feeds/tags/assad.rss", 10, "application/rss+xml"),
    ],
)
@both_databases
async def test_feeds_are_valid_with_the_right_entries(client, path, count, media_type):
    response, body, feed = await fetch_feed(client, path, count)
    assert response.headers["Content-Type"] == f"{media_type}; charset=utf-8"
    root = etree.fromstring(body)  # well-formed XML
    if path.endswith(".atom"):
        assert root.findtext("{http://www.w3.org/2005/Atom}author/{http://www.w3.org/2005/Atom}name")
    assert feed.feed.language == "en"
    links = {link.rel: link.href for link in feed.feed.links}
    assert links["self"] == BASE + path
    assert links["alternate"].startswith(BASE + "/")
    ids = [entry.id for entry in feed.entries]
    assert len(set(ids)) == count and all(i.startswith("urn:uuid:") for i in ids)
    for entry in feed.entries:
        assert entry.link.startswith(BASE + "/items/")
        assert entry.published_parsed
        assert path.endswith(".rss") or entry.get("updated")  # Atom entries carry both dates
    if "/tags/" in path:
        tag = path.rsplit("/", 1)[1].split(".")[0]
        assert all(tag in [t.term.lower() for t in entry.tags] for entry in feed.entries)


async def test_rss_guids_are_not_permalinks(client):
    _, body, _ = await fetch_feed(client, "/feeds/all.rss")
    guids = etree.fromstring(body).findall("./channel/item/guid")
    assert len(guids) == 30 and {g.get("isPermaLink") for g in guids} == {"false"}


async def test_merged_item_carries_full_text_and_teaser(client):
    _, _, feed = await fetch_feed(client, "/feeds/all.atom")
    article = seed_page("002").items[0]
    [entry] = [e for e in feed.entries if e.title == article.title]
    assert article.content[:200] in entry.content[0].value
    assert entry.summary.startswith("<p>Three months after")


async def test_feeds_are_newest_first(client):
    _, _, feed = await fetch_feed(client, "/feeds/all.atom")
    dates = [entry.published_parsed for entry in feed.entries]
    assert dates == sorted(dates, reverse=True)
    assert feed.entries[-1].title.endswith("— Lavrov")  # dated 2025-12-17 by its dateline


async def test_unknown_tag_is_a_one_line_404(client):
    response = await client.get("/feeds/tags/nowhere.atom")
    assert response.status == 404
    assert await response.text() == "no tag 'nowhere'\n"


async def test_tag_display_name_redirects_to_the_slug_feed(client):
    response = await client.get("/feeds/tags/IDLIB.rss?limit=3", allow_redirects=False)
    assert response.status == 301
    assert response.headers["Location"] == "/feeds/tags/idlib.rss?limit=3"
    await fetch_feed(client, "/feeds/tags/Idlib.rss?limit=3", 3)


@pytest.mark.parametrize("limit,status",
                         [("5", 200), ("500", 200), ("0", 400), ("501", 400), ("-1", 400), ("ten", 400)])
async def test_limit_is_checked(client, limit, status):
    response = await client.get(f"/feeds/all.atom?limit={limit}")
    assert response.status == status
    if status == 400:
        assert await response.text() == f"limit must be a whole number from 1 to 500, got '{limit}'\n"
    else:
        feed = feedparser.parse(await response.read())
        assert len(feed.entries) == min(int(limit), 30)


async def test_a_bad_page_number_says_what_is_allowed(client):
    response = await client.get("/feeds/all.atom?page=0")
    assert (response.status, await response.text()) == (400, "page must be a whole number from 1 to 1000000, got '0'\n")


@pytest.mark.parametrize("query", ["page=99999999999999999999", f"page={2**63 - 1}", "page=" + "9" * 5000,
                                   "limit=%C2%B2", "page=%E2%91%A0", "limit=%D9%A3", "page=1000001"])
async def test_numbers_out_of_any_range_are_a_400_not_a_500(client, query):
    response = await client.get(f"/feeds/all.atom?{query}")
    text = await response.text()
    assert response.status == 400 and text.count("\n") == 1 and len(text) < 120, text


async def test_conditional_get_and_head(client):
    first = await client.get("/feeds/all.atom")
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and first.headers["Cache-Control"] == "public, max-age=300"
    again = await client.get("/feeds/all.atom", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    since = await client.get("/feeds/all.atom", headers={"If-Modified-Since": modified})
    assert since.status == 304
    other = await client.get("/feeds/all.atom", headers={"If-None-Match": '"other"'})
    assert other.status == 200
    head = await client.head("/feeds/all.atom")
    assert head.status == 200 and head.headers["ETag"] == etag


async def test_gzip_body_is_compressed_once_and_has_its_own_etag(client):
    plain = await client.get("/feeds/all.atom", headers={"Accept-Encoding": "identity"})
    zipped = await client.get("/feeds/all.atom", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(await zipped.read()) == await plain.read()
    assert zipped.headers["ETag"] != plain.headers["ETag"]


async def test_feed_is_rendered_once_per_change(client, settings):
    """The ingester renders each feed once after a change (for the export);
    the server answers from those bytes. Other page sizes render on demand."""
    cache = client.app[CACHE]
    for _ in range(3):
        await client.get("/feeds/tags/assad.atom")
    assert (cache.misses, cache.hits) == (0, 3)
    etag = (await client.get("/feeds/tags/assad.atom")).headers["ETag"]
    write_seed(settings.seeds_dir, "010_assad.txt",
               "Contents tagged with Assad\n\n  • A new story about Assad\n\n    A new teaser about a new "
               "story that nobody has seen before in this feed at all …\n")
    report = await client.app[INGESTER].scan()
    assert report.new_items == 1
    response, body, feed = await fetch_feed(client, "/feeds/tags/assad.atom", 11)
    assert response.headers["ETag"] != etag
    assert feed.entries[0].title == "A new story about Assad"
    assert body == (settings.feeds_export_dir / "tags" / "assad.atom").read_bytes()
    assert cache.misses == 0
    await client.get("/feeds/tags/assad.atom?limit=5")
    await client.get("/feeds/tags/assad.atom?limit=5")
    assert (cache.misses, cache.hits) == (1, 6)


async def test_unchanged_data_keeps_the_etag_across_rescans(client, settings, clock):
    etag = (await client.get("/feeds/tags/idlib.atom")).headers["ETag"]
    for path in settings.seeds_dir.iterdir():
        os.utime(path)  # touched, not changed
    clock.advance(3600)
    report = await client.app[INGESTER].scan()
    assert report.files_changed == 0
    assert (await client.get("/feeds/tags/idlib.atom")).headers["ETag"] == etag


async def test_unchanged_data_keeps_the_etag_across_restarts(aiohttp_client, settings, clock):
    etags = []
    for _ in range(2):
        app = make_app(settings, schedule=False, clock=clock)
        client = await aiohttp_client(app)
        await app[INGESTER].scan()
        clock.advance(3600)
        etags.append((await client.get("/feeds/all.atom")).headers["ETag"])
        await client.close()
    assert etags[0] == etags[1]


async def test_exported_files_equal_the_served_feeds(client, settings):
    for path in ("all.atom", "all.rss", "tags/idlib.atom", "tags/assad.rss"):
        served = await (await client.get(f"/feeds/{path}")).read()
        assert (settings.feeds_export_dir / path).read_bytes() == served
    assert not list(settings.feeds_export_dir.rglob("*.tmp"))


async def test_pages_show_items_and_link_their_feeds(client):
    index = await client.get("/")
    html = await index.text()
    assert index.status == 200
    assert f'type="application/atom+xml" title="News aggregator (Atom)" href="{BASE}/feeds/all.atom"' in html
    assert 'href="http://feeds.example.test/tags/idlib">Idlib</a></td><td>10</td>' in html
    _, _, feed = await fetch_feed(client, "/feeds/tags/idlib.atom")
    key = feed.entries[0].link.rsplit("/", 1)[1]
    page = await client.get(f"/items/{key}")
    text = await page.text()
    assert page.status == 200 and feed.entries[0].title in text and ">Idlib</a>" in text
    assert (await client.get("/items/0000")).status == 404
    tag_page = await client.get("/tags/assad")
    assert tag_page.status == 200 and f'href="{BASE}/feeds/tags/assad.rss"' in await tag_page.text()


async def test_hostile_text_is_escaped_everywhere(client, settings):
    write_seed(settings.seeds_dir, "evil.txt",
               "<script>alert(1)</script> & ]]> \U0001F600 \u05e9\u05dc\u05d5\u05dd\x07\n\n"
               "Body with <b>tags</b>, an ampersand & and a CDATA end ]]> inside, long enough.")
    await client.app[INGESTER].scan()
    for path in ("/feeds/all.atom", "/feeds/all.rss"):
        _, body, feed = await fetch_feed(client, path, 31)
        assert feed.entries[0].title == "<script>alert(1)</script> & ]]> \U0001F600 \u05e9\u05dc\u05d5\u05dd"
        assert b"<script>" not in body
    key = feed.entries[0].link.rsplit("/", 1)[1]
    html = await (await client.get(f"/items/{key}")).text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_scheduler_scans_at_start_and_on_its_interval(aiohttp_client, make_settings):
    settings = make_settings(**{"seeds.interval_seconds": 1})
    client = await aiohttp_client(make_app(settings))  # real scheduler, real clock
    for _ in range(100):
        await asyncio.sleep(0.05)
        feed = feedparser.parse(await (await client.get("/feeds/all.atom")).read())
        if len(feed.entries) == 30:
            break
    assert len(feed.entries) == 30
    write_seed(settings.seeds_dir, "020_new.txt", "A story dropped in later\n\nIts full text, long enough to be read.")
    for _ in range(100):
        await asyncio.sleep(0.05)
        feed = feedparser.parse(await (await client.get("/feeds/all.atom")).read())
        if len(feed.entries) == 31:
            break
    assert "A story dropped in later" in [e.title for e in feed.entries]


@both_databases
async def test_other_outlets_report_is_linked_not_merged(client):
    _, _body, feed = await fetch_feed(client, "/feeds/all.atom", 30)
    article = next(e for e in feed.entries if e.title == seed_page("002").items[0].title)
    wire = next(e for e in feed.entries if e.title.endswith("— Lavrov"))
    assert [link.href for link in article.links if link.rel == "related"] == [wire.link]
    assert [link.href for link in wire.links if link.rel == "related"] == [article.link]
    unrelated = [e for e in feed.entries if e not in (article, wire)]
    assert not any(link.rel == "related" for e in unrelated for link in e.links)
    html = await (await client.get(wire.link.removeprefix(BASE))).text()
    section = html.split("Also reported as", 1)[1]
    assert article.title in section


async def test_health_readiness_and_metrics(aiohttp_client, settings, clock):
    app = make_app(settings, schedule=False, clock=clock)
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    not_ready = await client.get("/readyz")
    assert not_ready.status == 503 and await not_ready.json() == {"ready": False, "reason": "no scan finished yet"}
    await app[INGESTER].scan()
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["ready"] is True
    first = await client.get("/feeds/all.atom")
    await client.get("/feeds/all.atom", headers={"If-None-Match": first.headers["ETag"]})
    await client.get("/feeds/tags/nowhere.rss")
    text = await (await client.get("/metrics")).text()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
              for line in text.splitlines() if line and not line.startswith("#")}
    assert values["aggregator_items"] == 30 and values["aggregator_tags"] == 2
    assert values['aggregator_files{status="ok"}'] == 5
    assert values['aggregator_scans_total{result="ok"}'] == 1
    assert values["aggregator_scan_duration_seconds_count"] == 1
    assert values["aggregator_last_successful_scan_timestamp_seconds"] == clock.now.timestamp()
    assert values["aggregator_file_to_feed_seconds_count"] == 5
    assert values['aggregator_feed_cache_total{result="miss"}'] == 0  # rendered by the ingester
    assert values['aggregator_feed_cache_total{result="hit"}'] == 2
    assert values["aggregator_http_not_modified_total"] == 1
    assert values['aggregator_http_requests_total{route="/feeds/tags/{tags}.{fmt}",status="404"}'] == 1


async def test_readiness_fails_when_scans_stop(aiohttp_client, settings, clock):
    app = make_app(settings, schedule=False, clock=clock)
    client = await aiohttp_client(app)
    await app[INGESTER].scan()
    app[INGESTER].last_success -= timedelta(seconds=3 * settings.seeds_interval_seconds + 1)
    response = await client.get("/readyz")
    assert response.status == 503 and (await response.json())["reason"].startswith("no scan finished since")


def test_a_file_dated_in_the_future_is_read_not_deferred(storage, settings, clock):
    from aggregator.ingest import run_once

    path = write_seed(settings.seeds_dir, "ahead.txt", "A clock ahead\n\nSaved on a machine whose clock ran ahead.")
    ahead = time.time() + 3600
    os.utime(path, (ahead, ahead))
    report = run_once(storage, settings.seeds_dir, settings.seeds_ignore, clock, settle_seconds=30)
    assert report.deferred == 0 and storage.sources()["ahead.txt"].status == "ok"


def test_files_still_being_written_wait(storage, settings, clock):
    from aggregator.ingest import run_once

    path = settings.seeds_dir / "writing.txt"
    path.write_text("A story being written\n\nIts first half")  # mtime: now
    report = run_once(storage, settings.seeds_dir, settings.seeds_ignore, clock, settle_seconds=30)
    assert report.deferred == 1 and "writing.txt" not in storage.sources()
    part = settings.seeds_dir / "next.txt.part"
    part.write_text("Renamed into place\n\nA download finished and renamed.")
    report = run_once(storage, settings.seeds_dir, settings.seeds_ignore, clock)
    assert "next.txt.part" not in storage.sources() and "writing.txt" in storage.sources()
    part.rename(settings.seeds_dir / "next.txt")
    run_once(storage, settings.seeds_dir, settings.seeds_ignore, clock)
    assert storage.sources()["next.txt"].status == "ok"


async def test_a_failing_database_keeps_serving_the_last_good_data(client, settings, storage, caplog):
    """The store refuses writes (as when the disk is full); feeds stay as they
    were, the failure is logged and shown, and the next scan recovers."""
    import sqlalchemy

    before = await (await client.get("/feeds/tags/idlib.atom")).read()
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text(
            "CREATE TRIGGER full BEFORE INSERT ON items BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"))
    write_seed(settings.seeds_dir, "040_more.txt",
               "Contents tagged with Idlib\n\n  • A story the full disk refused\n\n"
               "    Its teaser, which could not be stored …\n")
    report = await client.app[INGESTER].scan()
    [failed] = report.files_not_read
    assert failed.path == "040_more.txt" and "database or disk is full" in failed.reason
    assert "040_more.txt: failed: database error" in caplog.text
    assert await (await client.get("/feeds/tags/idlib.atom")).read() == before
    assert "database or disk is full" in await (await client.get("/")).text()
    with storage.engine.begin() as connection:
        connection.execute(sqlalchemy.text("DROP TRIGGER full"))
    report = await client.app[INGESTER].scan()
    assert report.new_items == 1
    await fetch_feed(client, "/feeds/tags/idlib.atom", 11)


async def test_the_feed_cache_stays_bounded(client):
    from aggregator.cache import MAX_CACHED_FEEDS

    cache = client.app[CACHE]
    for page_size in range(1, MAX_CACHED_FEEDS + 1):
        cache.put(("filler", page_size), next(iter(cache.entries.values()), None))
    oldest = next(iter(cache.entries))
    await client.get("/feeds/all.rss?limit=7")
    assert len(cache.entries) == MAX_CACHED_FEEDS
    assert oldest not in cache.entries and list(cache.entries)[-1][1:] == (7, 1)


async def test_a_cached_tag_feed_and_its_304_do_not_read_the_store(client, storage):
    import sqlalchemy

    first = await client.get("/feeds/tags/idlib.atom")
    etag = first.headers["ETag"]
    with storage.engine.begin() as connection:  # tags can no longer be looked up
        connection.execute(sqlalchemy.text("ALTER TABLE tags RENAME TO tags_away"))
    again = await client.get("/feeds/tags/idlib.atom")
    assert again.status == 200 and await again.read() == await first.read()
    unchanged = await client.get("/feeds/tags/idlib.atom", headers={"If-None-Match": etag})
    assert unchanged.status == 304
    uncached = await client.get("/feeds/tags/assad.atom")  # never asked for: needs the store
    assert uncached.status == 503
