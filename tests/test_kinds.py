"""Every kind of page people save: HTML from three differently built sites,
Atom, RSS 2.0, RSS 1.0 and JSON Feed files, text copied from a browser with
the site around it; each story merged across all of them by its text and its
original address. The pages themselves are cases in tests/data/web (their
expectations in tests/data/web-pages, checked by test_parse)."""

import json
import os
import shutil
from datetime import datetime, timezone

import feedparser
import pytest

from aggregator import dedupe
from aggregator.errors import first_line
from aggregator.evaluate import evaluate
from aggregator.ingest import run_once
from aggregator.model import KnownItem, ParsedItem
from aggregator.names import canonical_link
from aggregator.read import Kind, kind_of, read_page
from aggregator.service import INGESTER
from aggregator.storage import Storage
from aggregator.web import make_app

from helpers import DATA, SEEDS, both_databases, write_seed

WEB = DATA / "web"
MTIME = datetime(2026, 11, 21, tzinfo=timezone.utc)
STORM = "Storm warning issued for western isles"
STORM_LINK = "https://www.islandherald.example/news/2025/03/12/storm-warning-western-isles"


def web_seeds(tmp_path, *names):
    """A seed folder holding some of the web corpus's files (folders whole),
    saved a day before the test's clock."""
    folder = tmp_path / "web"
    folder.mkdir()
    for name in names:
        source = WEB / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy(source, folder / name)
    saved = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc).timestamp()
    for path in folder.rglob("*"):
        os.utime(path, (saved, saved))
    return folder


def test_identity_across_kinds_on_the_labelled_web_corpus_is_perfect():
    result = evaluate(WEB, DATA / "web.expected.json")
    assert result.perfect, result.lines()
    assert (result.stories, result.items) == (18, 18)
    assert (result.link_accuracy, result.date_accuracy) == (1.0, 1.0)


def test_the_web_corpus_is_what_it_says():
    files = [path for path in WEB.rglob("*") if path.is_file()]
    assert len(files) >= 40
    kinds = {path.name: kind_of(path.name, path.read_bytes()) for path in files if path.parent == WEB}
    assert sum(kind == Kind.HTML for kind in kinds.values()) >= 15
    assert {name for name, kind in kinds.items() if kind == Kind.FEED} == {
        "a05_herald_feed.atom", "b04_metro_feed.rss", "b05_metro_feed.json", "c04_gazette.rdf",
        "d01_coastwire_feed.json", "d03_coastwire.xml"}
    layouts = {read_page(path.read_bytes(), MTIME, path.name).layout
               for path in files if path.suffix == ".txt"}
    assert layouts == {"listing", "tag", "article", "wire"}  # browser copies of all four layouts


@pytest.mark.parametrize("name,data,kind", [
    ("page.txt", b"<!DOCTYPE html><html><body>x</body></html>", Kind.HTML),  # content beats the name
    ("page.html", b"Title\n\nJust text saved under an HTML name.", Kind.HTML),  # the name as a hint
    ("page", b"\xef\xbb\xbf  <html lang=en><p>x</p></html>", Kind.HTML),
    ("news.txt", b'<?xml version="1.0"?>\n<rss version="2.0"><channel/></rss>', Kind.FEED),
    ("feed", b'<feed xmlns="http://www.w3.org/2005/Atom"/>', Kind.FEED),
    ("items.rdf", b'<?xml version="1.0"?><rdf:RDF xmlns:rdf="x"/>', Kind.FEED),
    ("feed.txt", b'{"version": "https://jsonfeed.org/version/1.1", "items": []}', Kind.FEED),
    ("data.json", b'{"not": "a feed"}', Kind.FEED),  # a feed name: read as one, and refused as one
    ("notes.json", b"Title\n\nPlain text under a feed's name.", Kind.TEXT),
    ("000.txt", b"Title\n\nBody", Kind.TEXT),
])
def test_a_files_kind_comes_from_its_content_with_the_name_as_a_hint(name, data, kind):
    assert kind_of(name, data) == kind


@pytest.mark.parametrize("address,canonical", [
    ("HTTPS://WWW.Example.COM:443/a/b?utm_source=x&id=3&fbclid=9#frag", "https://www.example.com/a/b?id=3"),
    ("http://example.com:80", "http://example.com/"),
    ("http://example.com:8080/x?gclid=1&mc_cid=2&mc_eid=3&igshid=4&ref_src=5", "http://example.com:8080/x"),
    ("https://example.com/p?q=a%20b&UTM_Medium=y&page=2", "https://example.com/p?q=a%20b&page=2"),
    ("/relative/path", None),
    ("javascript:alert(1)", None),
    ("ftp://example.com/file", None),
    ("http://[::1]:99999/", None),
])
def test_original_addresses_are_spelled_one_way(address, canonical):
    assert canonical_link(address) == canonical


def test_a_windows_1252_page_declared_by_meta_reads_right():
    page = read_page((WEB / "c02_gazette_story88.htm").read_bytes(), MTIME, "c02_gazette_story88.htm")
    [item] = page.items
    assert item.title == "Farmers’ market moves to riverside site"
    assert "“It is the right move" in item.content and "Renée Price" in item.content
    assert "Café owners" in item.content and "agreed – ending" in item.content
    assert item.link == "http://www.valleygazette.example/news/story.php?id=88"  # from "saved from url"


def test_an_article_is_its_body_only():
    [item] = read_page((WEB / "a02_herald_storm.html").read_bytes(), MTIME, "a02.html").items
    assert item.title == STORM  # og:title, not the <title> with the site's name
    for chrome in ("Advertisement", "Share this article", "Morag Campbell", "Photo: John Smith",
                   "Related stories", "Ferry timetable changes", "cookies", "All rights reserved"):
        assert chrome not in item.content
    assert item.content.count("\n\n") == 3  # four paragraphs
    assert item.tags == ("Weather", "Ferries") and item.link == STORM_LINK


def test_one_address_is_one_story_whatever_its_texts_say():
    stored = ParsedItem(title="Rents climb fastest in a decade", content="Average rents rose by nine per cent. " * 5,
                        link="https://metrodaily.example/money/rents")
    other_text = ParsedItem(title="Rents climb fastest in a decade",
                            summary="Tenants face the steepest rises since 2015.", link=stored.link)
    known = dedupe.plan_page([(stored, dedupe.fingerprint(stored.title, stored.text, stored.link))], {})
    item = known.items[0]
    candidate = KnownItem(id=1, guid=item.guid, title=item.title, summary=None, content=item.content,
                                 published=MTIME, link=item.link)
    assert dedupe.decide(other_text, [candidate]).rule == "same-link"
    elsewhere = ParsedItem(title=other_text.title, summary=other_text.summary, link="https://other.example/rents")
    assert dedupe.decide(elsewhere, [candidate]) is None


def test_a_date_to_the_minute_beats_a_bare_day_on_the_same_day():
    known = KnownItem(id=1, guid="g", title="t", summary="s", content=None,
                             published=datetime(2025, 3, 11, tzinfo=timezone.utc))
    timed = ParsedItem(title="t", summary="s", published=datetime(2025, 3, 11, 14, tzinfo=timezone.utc))
    assert dedupe.merge(known, timed, {}).published == timed.published
    earlier_day = ParsedItem(title="t", summary="s", published=datetime(2025, 3, 10, 9, tzinfo=timezone.utc))
    assert dedupe.merge(dedupe.applied(known, dedupe.merge(known, timed, {})), earlier_day, {}).published \
        == earlier_day.published


@both_databases
def test_a_story_seen_as_html_teaser_article_atom_entry_and_copied_text_is_one_item(storage, tmp_path, clock):
    folder = web_seeds(tmp_path, "a01_herald_front.html", "a02_herald_storm.html", "a05_herald_feed.atom",
                       "t05_herald_front_copied.txt")
    run_once(storage, folder, clock=clock)
    [storm] = [item for item in storage.all_items() if item.title == STORM]
    article = read_page((WEB / "a02_herald_storm.html").read_bytes(), MTIME, "a02.html").items[0]
    assert storm.content == article.content  # the fullest text
    assert storm.link == STORM_LINK  # the original address, without tracking parameters
    assert {tag.name for tag in storm.tags} == {"Weather", "Ferries"}  # every tag
    assert storm.published == datetime(2025, 3, 12, 7, 30, tzinfo=timezone.utc)  # the earliest date, to the minute
    assert sorted(storm.sources) == sorted(path.name for path in folder.iterdir())
    # Any order of the files gives the same item.
    again = tmp_path / "reversed"
    again.mkdir()
    for n, path in enumerate(sorted(folder.iterdir(), reverse=True)):
        shutil.copy(path, again / f"{n:02d}_{path.name}")
    with Storage(f"sqlite:///{tmp_path / 'reversed.db'}") as other:
        run_once(other, again, clock=clock)
        [same] = [item for item in other.all_items() if item.title == STORM]
    assert (same.content, same.link, same.published, {t.name for t in same.tags}) == \
        (storm.content, storm.link, storm.published, {t.name for t in storm.tags})


@both_databases
def test_a_saved_pages_assets_are_ignored_not_failed(storage, tmp_path, clock):
    folder = web_seeds(tmp_path, "a01_herald_front.html", "a01_herald_front_files", "b02_metro_tram.html",
                       "b02_metro_tram-Dateien")
    report = run_once(storage, folder, clock=clock)
    assert report.files_not_read == ()
    sources = storage.sources()
    assert {path: (source.status, source.reason) for path, source in sources.items() if source.status != "ok"} == {
        "a01_herald_front_files/cookies.js": ("ignored", "asset of a saved page (in a01_herald_front_files/)"),
        "a01_herald_front_files/logo.png": ("ignored", "asset of a saved page (in a01_herald_front_files/)"),
        "a01_herald_front_files/style.css": ("ignored", "asset of a saved page (in a01_herald_front_files/)"),
        "b02_metro_tram-Dateien/analytics": ("ignored", "asset of a saved page (in b02_metro_tram-Dateien/)"),
        "b02_metro_tram-Dateien/main.css": ("ignored", "asset of a saved page (in b02_metro_tram-Dateien/)"),
        "b02_metro_tram-Dateien/tram.jpg": ("ignored", "asset of a saved page (in b02_metro_tram-Dateien/)"),
    }
    assert run_once(storage, folder, clock=clock).files_changed == 0  # not read again
    write_seed(folder, "logo-copy.png", "not even an image, but named as one")
    write_seed(folder, "font.bin", "wOF2 and then some bytes")
    run_once(storage, folder, clock=clock)
    sources = storage.sources()
    assert (sources["logo-copy.png"].status, sources["logo-copy.png"].reason) == ("ignored", "not a page: an image")
    assert (sources["font.bin"].status, sources["font.bin"].reason) == ("ignored", "not a page: a font")


@both_databases
async def test_feeds_link_the_original_address_and_our_page(aiohttp_client, make_settings, tmp_path, clock):
    folder = web_seeds(tmp_path, "a02_herald_storm.html", "t06_harbour_article.txt")
    app = make_app(make_settings(**{"seeds.dir": str(folder)}), schedule=False, clock=clock)
    client = await aiohttp_client(app)
    await app[INGESTER].scan()
    atom = feedparser.parse(await (await client.get("/feeds/all.atom")).read())
    storm = next(e for e in atom.entries if e.title == STORM)
    assert storm.link == STORM_LINK
    related = [link.href for link in storm.links if link.rel == "related"]
    assert len(related) == 1 and "/items/" in related[0]
    harbour = next(e for e in atom.entries if e.title.startswith("Harbour"))
    assert "/items/" in harbour.link  # no source gave an address: our page
    rss = feedparser.parse(await (await client.get("/feeds/all.rss")).read())
    assert next(e for e in rss.entries if e.title == STORM).link == STORM_LINK
    feed = json.loads(await (await client.get("/feeds/all.json")).read())
    item = next(i for i in feed["items"] if i["title"] == STORM)
    assert item["url"] == STORM_LINK and item["_aggregator"]["page"] == related[0]
    page = await (await client.get(related[0].removeprefix("http://feeds.example.test"))).text()
    assert f'href="{STORM_LINK}"' in page


def test_the_shipped_seeds_keep_their_ids(storage, tmp_path, clock):
    expected = json.loads((DATA / "seeds" / "ids.json").read_text(encoding="utf-8"))["ids"]
    run_once(storage, SEEDS, clock=clock)
    assert {item.title: item.guid for item in storage.all_items()} == expected


def test_a_headline_that_names_an_error_is_news_and_a_body_class_is_not_furniture():
    teaser = "Officials found that a spreadsheet error had added four hundred votes to the winning candidate."
    page = (b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Error in vote count | Daily</title></head>'
            b'<body class="social-share-enabled nav-sticky"><main>'
            + b"".join(f'<div class="story"><h2><a href="/s{n}">Error in vote count {n}</a></h2><p>{teaser}</p></div>'
                       .encode() for n in range(2))
            + b'</main><div class="most-read-box"><h2><a href="/x">A popular story elsewhere</a></h2>'
              b'<p>This teaser sits in a most read box and is no story of the page at all.</p></div></body></html>')
    listed = read_page(page, MTIME, "front.html")
    assert [item.title for item in listed.items] == ["Error in vote count 0", "Error in vote count 1"]
    assert listed.items[0].link is None  # a relative link on a page with no address of its own


RSS_ENTRY = """<?xml version="1.0"?><rss version="2.0"><channel><title>{feed}</title><link>{home}</link>
<description>x</description><item><title>{title}</title><guid isPermaLink="false">1</guid>
<description>{text}</description></item></channel></rss>"""


@both_databases
def test_a_feed_entry_seen_again_is_one_story_even_rewritten_but_its_id_is_its_feeds_own(storage, tmp_path, clock):
    folder = tmp_path / "feeds"
    folder.mkdir()
    first = dict(feed="Harbour news", home="https://harbour.example/", title="Crane collapses at container quay",
                 text="A crane collapsed at the container quay on Tuesday night; nobody was hurt, the port said.")
    write_seed(folder, "harbour.xml", RSS_ENTRY.format(**first), minute=1)
    run_once(storage, folder, clock=clock)
    # The same entry, its headline and text rewritten by the newsroom: nothing but its id says it is the same.
    write_seed(folder, "harbour.xml", RSS_ENTRY.format(**{
        **first, "title": "Investigation opened after quay accident",
        "text": "Inspectors are examining the remains of the container crane that fell over late on Tuesday."}),
        minute=2)
    clock.advance()
    report = run_once(storage, folder, clock=clock)
    assert (report.new_items, report.updated_items, storage.item_count()) == (0, 1, 1)
    # Another feed numbering its entries from 1 too: another story.
    write_seed(folder, "valley.xml", RSS_ENTRY.format(
        feed="Valley news", home="https://valley.example/", title="Library reopens after flood repairs",
        text="The town library reopened on Monday after three months of repairs to its flooded basement."), minute=3)
    run_once(storage, folder, clock=clock)
    assert storage.item_count() == 2


def test_a_json_feed_with_fields_of_the_wrong_types_reads_what_it_can():
    feed = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": ["not", "text"], "items": [
        {"id": 7, "url": 12345, "title": "Harbour reopens after the storm", "tags": "Weather",
         "content_html": ["<p>a list</p>"], "summary": "The harbour reopened on Friday morning after the storm.",
         "date_published": 20250312},
        {"title": {"a": "dict"}, "content_text": "A title that is not text makes no item."},
        "not an entry"]}).encode()
    [item] = read_page(feed, MTIME, "feed.json").items
    assert (item.title, item.summary, item.content, item.link, item.tags, item.published) == (
        "Harbour reopens after the storm", "The harbour reopened on Friday morning after the storm.", None,
        None, (), None)


def test_a_category_line_over_an_article_is_no_tag_page():
    text = ("Home | News | Politics | Sport\n\nCategory: Politics\n\nMinister resigns over expenses claims\n\n"
            "The housing minister resigned on Friday after a newspaper published details of her expenses claims.\n\n"
            "She said she had broken no rules but did not want to distract from the government's work.\n")
    page = read_page(text.encode(), MTIME, "copied.txt")
    assert page.layout == "article"
    assert page.items[0].title == "Minister resigns over expenses claims"
    assert page.items[0].content.startswith("The housing minister resigned")


def test_an_error_without_a_message_still_says_something_in_one_line():
    assert first_line(ValueError()) == "ValueError()"
    assert first_line(ValueError("first\nsecond")) == "first"
