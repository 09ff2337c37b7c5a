"""What feed readers and pollers rely on: JSON Feed, OPML, tag combinations
and RFC 5005 paging, through the real app."""

import json

import pytest
from lxml import etree

from aggregator.service import INGESTER

from helpers import BASE, both_databases, fetch_feed, write_seed

ATOM = "{http://www.w3.org/2005/Atom}"


async def test_json_feed_matches_the_atom_feed(client):
    response = await client.get("/feeds/all.json")
    assert response.headers["Content-Type"] == "application/feed+json; charset=utf-8"
    feed = json.loads(await response.read())
    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["feed_url"] == f"{BASE}/feeds/all.json" and feed["home_page_url"] == f"{BASE}/"
    assert feed["title"] and feed["language"] == "en"
    _, _, atom = await fetch_feed(client, "/feeds/all.atom", 30)
    assert [item["id"] for item in feed["items"]] == [entry.id for entry in atom.entries]
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["content_html"].startswith("<p>")
        assert item["url"].startswith(f"{BASE}/items/") and item["title"]
        assert item["date_published"].endswith("+00:00") and item["date_modified"].endswith("+00:00")
    tagged = json.loads(await (await client.get("/feeds/tags/idlib.json")).read())
    assert len(tagged["items"]) == 10 and all(i["tags"] == ["Idlib"] for i in tagged["items"])


async def test_opml_lists_every_feed_and_each_can_be_fetched(client):
    response = await client.get("/feeds.opml")
    assert response.headers["Content-Type"] == "text/x-opml; charset=utf-8"
    opml = etree.fromstring(await response.read())
    assert opml.get("version") == "2.0" and opml.findtext("head/title")
    outlines = opml.findall("body/outline")
    assert [o.get("xmlUrl") for o in outlines] == [
        f"{BASE}/feeds/all.atom", f"{BASE}/feeds/tags/assad.atom", f"{BASE}/feeds/tags/idlib.atom"]
    for outline in outlines:
        assert outline.get("text") and outline.get("type") == "rss"
        await fetch_feed(client, outline.get("xmlUrl").removeprefix(BASE))
        page = await client.get(outline.get("htmlUrl").removeprefix(BASE))
        assert page.status == 200


@pytest.fixture
async def two_tag_client(client, settings):
    """One Idlib story also listed on an Assad tag page."""
    idlib = next(settings.seeds_dir.glob("001_*")).read_text(encoding="utf-8")
    first_item = idlib.split("\n\n  •")[1]
    write_seed(settings.seeds_dir, "030_assad_more.txt", "Contents tagged with Assad\n\n  •" + first_item)
    report = await client.app[INGESTER].scan()
    assert (report.new_items, report.updated_items) == (0, 1)
    return client


@both_databases
async def test_tag_combinations(two_tag_client):
    client = two_tag_client
    _, _, _any_of = await fetch_feed(client, "/feeds/tags/assad+idlib.atom", 20)
    _, _, all_of = await fetch_feed(client, "/feeds/tags/assad,idlib.atom", 1)
    assert all_of.entries[0].title == "Secret Syrian deal between Russia and Turkey uncovered"
    assert {t.term for t in all_of.entries[0].tags} == {"Idlib", "Assad"}
    assert all_of.feed.links[0].href == f"{BASE}/feeds/tags/assad,idlib.atom"
    etags = {(await client.get(p)).headers["ETag"] for p in
             ("/feeds/tags/assad+idlib.atom", "/feeds/tags/assad,idlib.atom", "/feeds/tags/idlib.atom")}
    assert len(etags) == 3


@both_databases
async def test_each_tag_combination_has_one_address(two_tag_client):
    """Any order, case, name or repetition of the tags redirects to the one
    address of their feed, so its pollers share one cache."""
    client = two_tag_client
    for asked, canonical in [("Assad+IDLIB.rss", "assad+idlib.rss"), ("idlib+assad.atom", "assad+idlib.atom"),
                             ("idlib,assad.json", "assad,idlib.json"), ("idlib+idlib.atom", "idlib.atom"),
                             ("idlib,Idlib,idlib.rss", "idlib.rss"), ("idlib+assad+idlib.atom", "assad+idlib.atom")]:
        response = await client.get(f"/feeds/tags/{asked}?limit=3", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (301, f"/feeds/tags/{canonical}?limit=3"), asked
    response = await client.get("/feeds/tags/" + "+".join(["idlib"] * 21) + ".atom")
    assert response.status == 400
    assert "at most 20 tags" in await response.text()


@both_databases
@pytest.mark.parametrize("fmt", ["atom", "rss"])
async def test_paged_feeds_reach_every_item(client, fmt):
    """RFC 5005: follow rel=next from the first page to the last."""
    url, ids, pages = f"/feeds/all.{fmt}?limit=12", [], []
    while url:
        _, body, feed = await fetch_feed(client, url)
        root = etree.fromstring(body)
        links = {link.get("rel"): link.get("href") for link in root.iter(f"{ATOM}link")}
        pages.append(links)
        ids += [entry.id for entry in feed.entries]
        url = links.get("next", "").removeprefix(BASE)
    assert len(pages) == 3 and len(ids) == 30 == len(set(ids))
    assert pages[0]["self"] == f"{BASE}/feeds/all.{fmt}?limit=12" and "previous" not in pages[0]
    assert pages[1]["previous"] == pages[0]["self"] == pages[2]["first"]
    assert pages[2]["self"] == f"{BASE}/feeds/all.{fmt}?limit=12&page=3" and "next" not in pages[2]
    assert (await client.get(f"/feeds/all.{fmt}?limit=12&page=4")).status == 404
    assert (await client.get(f"/feeds/all.{fmt}?page=0")).status == 400


async def test_json_feed_pages_with_next_url(client):
    first = json.loads(await (await client.get("/feeds/all.json?limit=20")).read())
    assert first["next_url"] == f"{BASE}/feeds/all.json?limit=20&page=2"
    second = json.loads(await (await client.get("/feeds/all.json?limit=20&page=2")).read())
    assert len(first["items"]) + len(second["items"]) == 30 and "next_url" not in second


async def test_pages_announce_json_feeds_too(client):
    html = await (await client.get("/")).text()
    assert f'type="application/feed+json" title="News aggregator (JSON Feed)" href="{BASE}/feeds/all.json"' in html
    assert f'href="{BASE}/feeds.opml"' in html
    tag_html = await (await client.get("/tags/idlib")).text()
    assert (f'rel="alternate" type="application/atom+xml" title="News aggregator: Idlib (Atom)" '
            f'href="{BASE}/feeds/tags/idlib.atom"') in tag_html
