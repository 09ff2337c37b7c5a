"""Exact answers to pollers and people: conditional GET to the second, one
address per feed, W3C-clean Atom, honest dates, HTML 404 pages."""

import email.utils
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree, html

from aggregator import service
from aggregator.render import FORMATS
from aggregator.service import INGESTER, LIVE
from aggregator.storage import Storage
from aggregator.web import make_app

from helpers import BASE, ROOT, both_databases, fetch_feed, write_seed

ATOM = "{http://www.w3.org/2005/Atom}"


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(timezone.utc), usegmt=True)


def last_modified(response) -> datetime:
    return email.utils.parsedate_to_datetime(response.headers["Last-Modified"])


def new_story(folder, name: str, title: str, minute: int = 40):
    write_seed(folder, name, f"Contents tagged with Idlib\n\n  • {title}\n\n"
               f"    A story nobody has told before, about {title}, long enough to stand apart …\n", minute)


async def test_if_modified_since_is_compared_to_the_second_the_header_says(client):
    first = await client.get("/feeds/all.atom")
    stated = last_modified(first)
    assert first.headers["Last-Modified"] == http_date(stated)
    second_before = stated - timedelta(seconds=1)
    same = await client.get("/feeds/all.atom", headers={"If-Modified-Since": http_date(stated)})
    earlier = await client.get("/feeds/all.atom", headers={"If-Modified-Since": http_date(second_before)})
    assert (same.status, earlier.status) == (304, 200)


async def test_an_if_modified_since_in_the_future_is_ignored(client):
    ahead = client.app[service.CLOCK]() + timedelta(days=1)
    response = await client.get("/feeds/all.atom", headers={"If-Modified-Since": http_date(ahead)})
    assert response.status == 200


async def test_if_none_match_on_several_header_lines_is_read_whole(client):
    etag = (await client.get("/feeds/all.atom")).headers["ETag"]
    response = await client.get("/feeds/all.atom", headers=[("If-None-Match", '"other"'), ("If-None-Match", etag)])
    assert response.status == 304


@both_databases
async def test_a_later_page_moves_its_last_modified_when_its_items_shift(client, settings, clock):
    path = "/feeds/all.atom?limit=5&page=3"
    before = await client.get(path)
    body, stated = await before.read(), before.headers["Last-Modified"]
    clock.advance(3600)
    new_story(settings.seeds_dir, "040_new.txt", "A brand new story at the top of every feed")
    assert (await client.app[INGESTER].scan()).new_items == 1
    after = await client.get(path, headers={"If-Modified-Since": stated})
    assert after.status == 200
    assert await after.read() != body
    assert last_modified(after) > email.utils.parsedate_to_datetime(stated)


async def test_last_modified_moves_when_the_configuration_does(client, settings, clock):
    stated = (await client.get("/feeds/all.atom")).headers["Last-Modified"]
    clock.advance(3600)
    service.reload(client.app, settings.__class__(**{**settings.__dict__, "feeds_title": "Renamed"}))
    response = await client.get("/feeds/all.atom", headers={"If-Modified-Since": stated})
    assert response.status == 200 and b"<title>Renamed</title>" in await response.read()
    assert last_modified(response) == client.app[LIVE].since


async def test_sighup_rewrites_the_exported_feeds(client, settings, clock):
    exported = settings.feeds_export_dir / "all.atom"
    assert b"<title>News aggregator</title>" in exported.read_bytes()
    service.reload(client.app, settings.__class__(**{**settings.__dict__, "feeds_title": "Renamed"}))
    report = await client.app[INGESTER].scan()
    assert report.files_changed == 0
    assert b"<title>Renamed</title>" in exported.read_bytes()
    assert b"Renamed: Idlib" in (settings.feeds_export_dir / "tags" / "idlib.rss").read_bytes()


async def test_an_empty_feed_is_dated_when_the_store_last_changed(aiohttp_client, make_settings, tmp_path, clock):
    empty = tmp_path / "empty"
    empty.mkdir()
    settings = make_settings(**{"seeds.dir": str(empty)})
    client = await aiohttp_client(make_app(settings, schedule=False, clock=clock))
    await client.app[INGESTER].scan()
    with Storage(settings.database_url) as storage:
        created = storage.data_changed_at()
    _, body, _ = await fetch_feed(client, "/feeds/all.atom", 0)
    updated = etree.fromstring(body).findtext(f"{ATOM}updated")
    assert datetime.fromisoformat(updated) == created
    assert created.year > 2000
    response = await client.get("/feeds/all.atom")
    assert last_modified(response) == max(created, client.app[LIVE].since).replace(microsecond=0)


@both_databases
async def test_no_two_atom_entries_share_an_updated_date(client):
    """W3C: "Two entries with the same value for atom:updated". The items of
    one page change one after the other, a microsecond apart."""
    for path in ("/feeds/all.atom?limit=500", "/feeds/tags/idlib.atom", "/feeds/tags/assad.atom"):
        _, body, _ = await fetch_feed(client, path)
        dates = [e.findtext(f"{ATOM}updated") for e in etree.fromstring(body).iter(f"{ATOM}entry")]
        assert len(dates) == len(set(dates)) > 1, path


async def test_atom_declares_no_second_prefix_for_its_own_namespace(client):
    """W3C: "Avoid Namespace Prefix: atom", on paged feeds and entries with related links."""
    for path in ("/feeds/all.atom?limit=5", "/feeds/all.atom?limit=5&page=2", "/feeds/tags/idlib.atom"):
        _, body, _ = await fetch_feed(client, path)
        root = etree.fromstring(body)
        assert root.nsmap == {None: ATOM.strip("{}")}, path
        assert {link.get("rel") for link in root.iter(f"{ATOM}link")} >= {"self", "alternate"}
    _, body, _ = await fetch_feed(client, "/feeds/all.rss?limit=5")
    assert etree.fromstring(body).find(f"channel/{ATOM}link[@rel='next']") is not None


async def test_a_page_past_the_end_is_a_404_as_the_readme_says(client):
    response = await client.get("/feeds/all.atom?limit=5&page=7")
    assert response.status == 404 and response.content_type == "text/plain"
    assert "a page past the last one is a `404`" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", ["/tags/nowhere", "/items/0000", "/no/such/page", "/tags/"])
async def test_people_get_an_html_404_page(client, path):
    response = await client.get(path)
    assert response.status == 404 and response.content_type == "text/html"
    page = html.fromstring(await response.text())
    assert page.findtext(".//h1") == "Not found"
    assert page.find(".//a[@href='http://feeds.example.test/']") is not None


@pytest.mark.parametrize("path", ["/feeds/tags/nowhere.atom", "/feeds/nothing.rss", "/status.json/x"])
async def test_programs_get_a_plain_404(client, path):
    response = await client.get(path)
    assert response.status == 404 and response.content_type == "text/plain"


async def test_an_item_page_announces_each_feed_under_its_own_name(client):
    _, _, feed = await fetch_feed(client, "/feeds/tags/idlib.atom")
    page = html.fromstring(await (await client.get(f"/items/{item_key(feed.entries[0])}")).text())
    titles = {link.get("title"): link.get("href") for link in page.iterfind(".//head/link[@rel='alternate']")}
    assert titles["News aggregator (Atom)"] == f"{BASE}/feeds/all.atom"
    assert titles["News aggregator: Idlib (RSS)"] == f"{BASE}/feeds/tags/idlib.rss"
    assert titles["News aggregator: Idlib (JSON Feed)"] == f"{BASE}/feeds/tags/idlib.json"
    assert not any(page.findtext(".//h1") in title for title in titles)


def item_key(entry) -> str:
    return next(link.href for link in entry.links if "/items/" in link.href).rsplit("/", 1)[1]


async def test_teasers_show_they_are_cut_and_pages_nest_properly(client):
    _, _, feed = await fetch_feed(client, "/feeds/all.atom?limit=500")
    teasers = [e for e in feed.entries if "content" not in e]
    cut = [e for e in teasers if e.summary.endswith(" …</p>")]
    assert cut, "the seeds' listing teasers stop mid-sentence"
    assert all(e.summary.removesuffix("</p>").endswith(("…", ".", "!", "?", "”", '"')) for e in teasers)
    page = html.fromstring(await (await client.get(f"/items/{item_key(cut[0])}")).text())
    assert page.xpath("string(.//article/p[last()-1])").endswith(" …")
    for entry in feed.entries:
        item = html.fromstring(await (await client.get(f"/items/{item_key(entry)}")).text())
        assert not item.xpath(".//strong[p] | .//strong[div]"), entry.title
        assert [t.get("datetime") for t in item.iter("time")] and all(t.get("datetime") for t in item.iter("time"))
    index = await (await client.get("/")).text()
    assert ">Atom</a>" in index and ">ATOM<" not in index and ">JSON Feed</a>" in index
    assert "time { white-space: nowrap; }" in index


async def test_every_format_is_named_and_typed(client):
    for fmt, media_type in FORMATS.items():
        response = await client.get(f"/feeds/all.{fmt}")
        assert response.headers["Content-Type"] == media_type
