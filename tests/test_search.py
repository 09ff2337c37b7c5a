"""Full-text search on both databases: the query language, ranking,
accents, the index kept in step with the items, the search page, search
feeds, saved searches, the command, hostile queries, and results equal to a
plain filter over `items --json`."""

import gzip
import json
import re
import unicodedata
from collections.abc import Iterator
from datetime import date, datetime, timezone
from urllib.parse import quote

import feedparser
import pytest
import sqlalchemy
from alembic import command
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from aggregator.config import settings_from
from aggregator.errors import BadRequest, ConfigError
from aggregator.ingest import run_once
from aggregator.search import BadQuery, parse_query
from aggregator.service import CACHE, INGESTER, settings_of
from aggregator.storage import Storage, migrate
from aggregator.web import make_app

from helpers import BASE, DATA, app_in_thread, both_databases, fetch_feed, free_port, run, write_seed

STORIES = [
    {"id": "floods", "title": "Floods in Côte d'Ivoire", "tags": ["Africa"], "date": "2025-03-02T10:00:00Z",
     "text": "Heavy rain hit Abidjan on Monday and rivers rose across the south of the country for three days."},
    {"id": "markets", "title": "Markets steady in Abidjan", "tags": ["Economy"], "date": "2025-02-20T10:00:00Z",
     "text": "Shares closed flat as traders waited for the central bank; the cote of the franc was stable, "
             "and the money stayed put."},
    {"id": "storm", "title": "Storm warning for the coast", "tags": ["Africa", "Weather"],
     "date": "2025-03-05T10:00:00Z",
     "text": "Forecasters expect heavy rain and floods along the coast of Ghana; the storm may reach "
             "Côte d'Ivoire by Friday."},
]


def json_feed(stories: list[dict]) -> str:
    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "Wire", "items": [
        {"id": s["id"], "url": f"https://news.example.org/{s['id']}", "title": s["title"],
         "content_text": s["text"], "tags": s["tags"], "date_published": s["date"]} for s in stories]})


@pytest.fixture
def stories(tmp_path):
    folder = tmp_path / "stories"
    folder.mkdir()
    write_seed(folder, "wire.json", json_feed(STORIES))
    return folder


@pytest.fixture
def store(database_url, tmp_path, stories) -> Iterator[Storage]:
    url = database_url if not database_url.startswith("sqlite") else f"sqlite:///{tmp_path / 'search.db'}"
    with Storage(url) as storage:
        assert run_once(storage, stories).new_items == len(STORIES)
        yield storage


def found(storage: Storage, q: str, by_rank: bool = False) -> list[str]:
    """The ids (as the stories name them) of the items a query finds, in order."""
    items = storage.search(parse_query(q), 100, by_rank=by_rank)
    assert storage.search_count(parse_query(q)) == len(items)
    return [item.link.rsplit("/", 1)[1] for item in items]


@both_databases
@pytest.mark.parametrize(("q", "expected"), [
    ("abidjan", ["floods", "markets"]),
    ("ABIDJAN rain", ["floods"]),
    ('"rivers rose"', ["floods"]),
    ('"rose rivers"', []),
    ('"heavy rain"', ["storm", "floods"]),
    ("rain -storm", ["floods"]),
    ('rain -"along the coast"', ["floods"]),
    ("floods OR shares", ["storm", "floods", "markets"]),
    ("floods OR shares abidjan", ["floods", "markets"]),
    ("tag:africa", ["storm", "floods"]),
    ("tag:Weather rain", ["storm"]),
    ("rain -tag:weather", ["floods"]),
    ("tag:economy OR tag:weather", ["storm", "markets"]),
    ("tag:nosuch", []),
    ("since:2025-03-02", ["storm", "floods"]),
    ("until:2025-03-02", ["floods", "markets"]),
    ("since:2025-03-03 until:2025-03-05", ["storm"]),
    ("rain since:2025-03-03", ["storm"]),
    ("Cote", ["storm", "floods", "markets"]),
    ("CÔTE d'ivoire", ["storm", "floods"]),
    ("cote -côte", []),
    ("africa", ["storm", "floods"]),  # tag names are words of the item too
    ("-rain", ["markets"]),
])
def test_the_query_language_finds_what_it_says(store, q, expected):
    assert found(store, q) == expected


@both_databases
def test_ranking_puts_a_title_match_first(store):
    # Newest first, the storm warning leads; best first, the headline that says it.
    assert found(store, "cote") == ["storm", "floods", "markets"]
    assert found(store, "cote", by_rank=True)[0] == "floods"
    assert found(store, "abidjan", by_rank=True) == ["markets", "floods"]


@both_databases
def test_the_index_follows_every_change_to_an_item(store, stories):
    assert found(store, "banking") == []
    grown = dict(STORIES[1], tags=["Banking"], text=STORIES[1]["text"] + " Later the bank cut its rate to 2 percent.")
    write_seed(stories, "update.json", json_feed([grown]))
    report = run_once(store, stories)
    assert (report.new_items, report.updated_items) == (0, 1)
    assert found(store, "banking") == ["markets"]  # a new tag's words
    assert found(store, '"cut its rate"') == ["markets"]  # the fuller text
    assert found(store, "floods") == ["storm", "floods"]  # nothing else moved
    with store.writer(datetime.now(timezone.utc)) as writer:
        assert writer.forget_items_only_from("wire.json") == 2  # the markets story is also in update.json
    assert found(store, "rain") == []
    assert found(store, "abidjan") == ["markets"]


@both_databases
def test_the_migration_indexes_the_items_stored_before(database_url, tmp_path, stories):
    url = database_url if not database_url.startswith("sqlite") else f"sqlite:///{tmp_path / 'old.db'}"
    with Storage(url) as storage:
        run_once(storage, stories)
        with storage.engine.begin() as connection:
            command.downgrade(migrate.alembic_config(connection), "0005")
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as connection:
        assert migrate.current(connection) == "0005"
        tables = sqlalchemy.inspect(connection).get_table_names()
        columns = [c["name"] for c in sqlalchemy.inspect(connection).get_columns("items")]
    engine.dispose()
    assert "items_search" not in tables and "search_vector" not in columns  # no index before
    with Storage(url, migrate=True) as storage:
        assert found(storage, "abidjan") == ["floods", "markets"]
        assert found(storage, "cote", by_rank=True)[0] == "floods"


# --- the query language on its own ------------------------------------------------


@pytest.mark.parametrize(("q", "message"), [
    ('"no-fly zone', "the quote at character 1 is not closed"),
    ('idlib -"no', "the quote at character 8 is not closed"),
    ("idlib OR", "OR needs a term on each side (character 7)"),
    ("OR idlib", "OR needs a term on each side (character 1)"),
    ("a OR OR b", "OR needs a term on each side (character 3)"),
    ("a OR -b", "OR joins terms to look for, not exclusions or dates (character 3)"),
    ("since:2025-3-1", "since: wants a date like 2025-03-01, got '2025-3-1' (character 1)"),
    ("x until:yesterday", "until: wants a date like 2025-03-01, got 'yesterday' (character 3)"),
    ("-since:2025-03-01", "-since: cannot be excluded; use until: instead (character 1)"),
    ("since:2025-03-02 until:2025-03-01", "since:2025-03-02 is after until:2025-03-01: nothing can match"),
    ("tag:", "tag: wants a tag name (character 1)"),
    ("!!! ...", "the query has no word, tag or date to look for"),
    ("a\x00b", "the query holds a control character ('\\x00') at character 2"),
    ("x" * 501, "the query is 501 characters long; at most 500"),
    (" ".join(["w"] * 31), "the query has more than 30 terms"),
])
def test_a_query_that_cannot_be_read_says_where(q, message):
    with pytest.raises(BadQuery) as caught:
        parse_query(q)
    assert str(caught.value) == message
    assert isinstance(caught.value, BadRequest)  # a 400 on the web


def test_fts_syntax_typed_by_a_person_is_text():
    # FTS5 and tsquery operators are no operators here: only words reach the index.
    query = parse_query('NEAR(a b) title:x ^y z* {body}:w (v) a&b !c NOT d')
    words = [atom.words for clause in query.all_of for atom in clause]
    assert words == [("near", "a"), ("b",), ("title", "x"), ("y",), ("z",), ("body", "w"), ("v",), ("a", "b"),
                     ("c",), ("not",), ("d",)]
    assert parse_query("10:30 BBC:").all_of == parse_query('"10 30" bbc').all_of
    assert parse_query("tag:\"Côte d'Ivoire\" since:2025-03-01").since == date(2025, 3, 1)


# --- pages, feeds, saved searches ----------------------------------------------------


@pytest.fixture
async def searched(aiohttp_client, make_settings, stories, clock):
    settings = make_settings(**{"seeds.dir": str(stories), "feeds.limit": 2,
                                "searches": [{"name": "Rain in Africa", "q": "rain tag:africa"}]})
    app = make_app(settings, schedule=False, clock=clock)
    client = await aiohttp_client(app)
    await app[INGESTER].scan()
    return client


async def test_the_search_page_lists_highlights_and_pages(searched):
    response = await searched.get("/search", params={"q": "cote"})
    assert response.status == 200
    page = await response.text()
    assert "3 items match <q>cote</q>; 1–2 shown." in page
    assert page.count("<mark>Côte</mark>") == 2  # the headline, and the storm's text around the match
    assert page.index("Storm warning") < page.index("Floods in")  # newest first
    assert f'title="News aggregator: “cote” (Atom)" href="{BASE}/feeds/search.atom?q=cote"' in page
    assert f'<a rel="next" href="{BASE}/search?q=cote&amp;sort=newest&amp;page=2">' in page
    second = await (await searched.get("/search", params={"q": "cote", "page": "2"})).text()
    assert "Markets steady" in second and "<mark>cote</mark> of the franc" in second
    ranked = await (await searched.get("/search", params={"q": "cote", "sort": "rank"})).text()
    assert ranked.index("Floods in") < ranked.index("Storm warning")
    assert (await searched.get("/search", params={"q": "cote", "page": "3"})).status == 404


async def test_every_page_has_the_search_box(searched):
    for path in ("/", "/tags/africa", "/search"):
        page = await (await searched.get(path)).text()
        assert '<form role="search" action="http://feeds.example.test/search"' in page, path


async def test_a_bad_query_is_a_400_page_saying_where(searched):
    response = await searched.get("/search", params={"q": 'floods "in'})
    assert response.status == 400
    page = await response.text()
    assert "the quote at character 8 is not closed" in page
    assert 'value="floods &#34;in"' in page  # what was typed stays in the box, escaped
    feed = await searched.get("/feeds/search.atom", params={"q": 'floods "in'})
    assert feed.status == 400 and await feed.text() == "the quote at character 8 is not closed\n"
    missing = await searched.get("/feeds/search.atom")
    assert missing.status == 400 and "needs a query" in await missing.text()


async def test_what_the_items_say_is_escaped_around_the_marks(aiohttp_client, make_settings, tmp_path, clock):
    folder = tmp_path / "hostile"
    folder.mkdir()
    story = {"id": "x", "title": "<script>alert(1)</script> Abidjan & <b>co</b>", "tags": ["<i>t</i>"],
             "date": "2025-03-01T00:00:00Z", "text": "Prices rose 5% & more, 3 < 4 > 2, in Abidjan (\"here\")."}
    write_seed(folder, "hostile.json", json_feed([story]))
    app = make_app(make_settings(**{"seeds.dir": str(folder)}), schedule=False, clock=clock)
    client = await aiohttp_client(app)
    await app[INGESTER].scan()
    page = await (await client.get("/search", params={"q": "abidjan"})).text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>Abidjan</mark> &amp; &lt;b&gt;co&lt;/b&gt;" in page
    assert "5% &amp; more, 3 &lt; 4 &gt; 2, in <mark>Abidjan</mark> (&#34;here&#34;)." in page
    assert "<script>" not in page


async def test_a_search_feed_is_a_feed_like_any_other(searched):
    response, rain, feed = await fetch_feed(searched, "/feeds/search.atom?q=rain", count=2)
    assert [entry.title for entry in feed.entries] == ["Storm warning for the coast", "Floods in Côte d'Ivoire"]
    assert feed.feed.title == "News aggregator: “rain”"
    links = {link.rel: link.href for link in feed.feed.links}
    assert links["self"] == f"{BASE}/feeds/search.atom?q=rain"
    assert links["alternate"] == f"{BASE}/search?q=rain"
    etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    assert (await searched.get("/feeds/search.atom?q=rain", headers={"If-None-Match": etag})).status == 304
    assert (await searched.get("/feeds/search.atom?q=rain", headers={"If-Modified-Since": modified})).status == 304
    zipped = await searched.get("/feeds/search.atom?q=rain", headers={"Accept-Encoding": "gzip"},
                                auto_decompress=False)
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(await zipped.read()) == rain
    plain = await searched.get("/feeds/search.atom?q=rain", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.headers["ETag"] != zipped.headers["ETag"]
    # Paged as RFC 5005 says, the query kept in every link.
    _, _, first = await fetch_feed(searched, "/feeds/search.rss?q=cote", count=2)
    assert first.feed.links[-1].rel == "next"
    _, _, second = await fetch_feed(searched, first.feed.links[-1].href.removeprefix(BASE), count=1)
    assert second.entries[0].title == "Markets steady in Abidjan"
    assert {link.rel: link.href for link in second.feed.links}["first"] == f"{BASE}/feeds/search.rss?q=cote"
    listed = await (await searched.get("/feeds/search.json?q=cote&limit=3")).json(content_type=None)
    assert [item["title"] for item in listed["items"]][2] == "Markets steady in Abidjan"
    assert "next_url" not in listed
    # Served from the cache the second time: a hit, the same bytes.
    hits = searched.app[CACHE].hits
    assert (await (await searched.get("/feeds/search.atom?q=rain")).read()) == rain
    assert searched.app[CACHE].hits == hits + 1


async def test_a_search_address_as_typed_is_its_own_self_link(searched):
    """`tag:` and `since:` keep their colons, so a reader that fetched the
    address as a person typed it finds that address as the feed's self."""
    typed = "/feeds/search.rss?q=rain+tag:africa+since:2025-03-01&limit=1"
    _, _, feed = await fetch_feed(searched, typed, count=1)
    links = {link.rel: link.href for link in feed.feed.links}
    assert links["self"] == BASE + typed
    assert links["next"] == BASE + typed + "&page=2"


async def test_saved_searches_are_in_the_opml_and_the_export_folder(searched):
    settings = settings_of(searched.app)
    opml = await (await searched.get("/feeds.opml")).text()
    assert ('text="News aggregator: Rain in Africa" title="News aggregator: Rain in Africa" '
            f'xmlUrl="{BASE}/feeds/search.atom?q=rain+tag:africa"') in opml
    exported = settings.feeds_export_dir / "searches" / "rain-in-africa.atom"
    served = await (await searched.get("/feeds/search.atom", params={"q": "rain tag:africa"})).read()
    assert exported.read_bytes() == served
    assert len(feedparser.parse(served).entries) == 2
    for fmt in ("rss", "json"):
        assert (settings.feeds_export_dir / "searches" / f"rain-in-africa.{fmt}").exists()


@pytest.mark.parametrize(("searches", "message"), [
    ([{"name": "x"}], "searches: search 1 must have a name and a q, both strings, and nothing else"),
    ([{"name": "x", "q": '"open'}], "searches: search 1 ('x'): q: the quote at character 1 is not closed"),
    ([{"name": "A b", "q": "a"}, {"name": "a-B", "q": "b"}], "searches: search 2: another search has the name 'a-B'"),
    ([{"name": "a", "q": "x  y"}, {"name": "b", "q": "x y"}],
     "searches: search 2 ('b'): another search has the same q"),
    ([{"name": " ", "q": "a"}], "searches: search 1: name must be 1 to 100 characters of plain text"),
    ({"name": "a"}, "searches: expected [[searches]] tables, each with a name and a q"),
])
def test_saved_searches_are_checked_at_load(tmp_path, searches, message):
    (tmp_path / "seeds").mkdir()
    with pytest.raises(ConfigError) as caught:
        settings_from({"searches": searches}, tmp_path)
    assert str(caught.value) == message


# --- the command, and a plain filter over `items --json` -------------------------------


def fold_words(text: str) -> list[str]:
    """Words as a person would compare them: case and accents aside."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return re.findall(r"[^\W_]+", plain.casefold())


def contains(texts: list[str], phrase: list[str]) -> bool:
    for text in texts:
        found = fold_words(text)
        if any(found[i:i + len(phrase)] == phrase for i in range(len(found) - len(phrase) + 1)):
            return True
    return False


def plain_filter(items: list[dict], all_of: list[list[str]], none_of: list[str], tag: str | None = None,
                 since: str | None = None, until: str | None = None) -> set[str]:
    """The keys of the items with every phrase of `all_of` (each a list of
    alternatives), none of `none_of`, the tag and the dates."""
    keys = set()
    for item in items:
        texts = [item["title"], item["summary"] or "", item["content"] or "", *item["tags"]]
        if not all(any(contains(texts, fold_words(p)) for p in alternatives) for alternatives in all_of):
            continue
        if any(contains(texts, fold_words(p)) for p in none_of):
            continue
        if tag and tag not in [t.lower() for t in item["tags"]]:
            continue
        day = item["published"][:10]
        if (since and day < since) or (until and day > until):
            continue
        keys.add(item["key"])
    return keys


@both_databases
def test_results_equal_a_plain_filter_over_the_labelled_corpus(tmp_path, database_url):
    url = f"sqlite:///{tmp_path / 'c.db'}" if database_url.startswith("sqlite") else database_url
    config = tmp_path / "config.toml"
    config.write_text(f'[seeds]\ndir = "{DATA / "corpus"}"\n[database]\nurl = "{url}"\n'
                      f'[feeds]\nexport_dir = "{tmp_path / "feeds"}"\n', encoding="utf-8")
    assert run(config, "ingest").returncode == 0
    items = json.loads(run(config, "items", "--json").stdout)
    assert len(items) > 20
    cases = [
        ("energy", [["energy"]], []),
        ("wind OR hydrogen", [["wind", "hydrogen"]], []),
        ('"central bank"', [["central bank"]], []),
        ("bank -ecb", [["bank"]], ["ecb"]),
        ("storm OR flood coast", [["storm", "flood"], ["coast"]], []),
        ("minister -\"prime minister\"", [["minister"]], ["prime minister"]),
        ("the", [["the"]], []),
    ]
    checked = 0
    for q, all_of, none_of in cases:
        result = run(config, "search", q, "--json", "--limit", "100000")
        expected = plain_filter(items, all_of, none_of)
        assert result.returncode == (0 if expected else 1), (q, result.stderr)
        got = {item["key"] for item in json.loads(result.stdout)}
        assert got == expected, q
        checked += bool(expected)
    assert checked >= 6  # the cases find something: the comparison is not between two empty sets
    tag = next(t for item in items for t in item["tags"])
    day = sorted(item["published"][:10] for item in items)[len(items) // 2]
    for q, kwargs in ((f'tag:"{tag}"', {"tag": tag.lower()}), (f"since:{day}", {"since": day}),
                      (f"until:{day}", {"until": day})):
        got = {item["key"] for item in json.loads(run(config, "search", q, "--json", "--limit", "100000").stdout)}
        assert got == plain_filter(items, [], [], **kwargs) and got, q
    bad = run(config, "search", '"unclosed')
    assert (bad.returncode, bad.stderr) == (2, "aggregator: the quote at character 1 is not closed\n")


# --- hostile queries, on a real socket ------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def search_server(tmp_path_factory, request) -> Iterator[str]:
    root = tmp_path_factory.mktemp("search-fuzz")
    folder = root / "seeds"
    folder.mkdir()
    write_seed(folder, "wire.json", json_feed(STORIES))
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'db.sqlite'}"
    else:
        admin_url = request.getfixturevalue("postgres_admin_url")
        admin = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sqlalchemy.text('DROP DATABASE IF EXISTS "t_search_fuzz" WITH (FORCE)'))
            connection.execute(sqlalchemy.text('CREATE DATABASE "t_search_fuzz"'))
        admin.dispose()
        url = sqlalchemy.engine.make_url(admin_url).set(database="t_search_fuzz").render_as_string(False)
        Storage(url, migrate=True).close()
    port = free_port()
    settings = settings_from({"seeds.dir": str(folder), "database.url": url, "feeds.export_dir": str(root / "f"),
                              "server.base_url": f"http://127.0.0.1:{port}"}, root)
    with app_in_thread(settings, port):
        yield f"http://127.0.0.1:{port}"


# Pieces of query syntax, ours and the databases' (FTS5, tsquery), and text around them.
PIECES = ['"', "-", "OR", "AND", "NOT", "NEAR(", ")", "(", "*", "^", ":", "tag:", "since:", "until:",
          "title:", "{title}:", "&", "|", "!", "<->", "'", "\\", "%", "_", "\x00", "\ud800", "2025-03-01",
          "rain", "Côte", "ß", "\u200b", "😀", " ", "  ", "\t", "\n", "x" * 60, "abidjan"]
hostile = st.lists(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), max_size=14).map("".join)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=hostile, path=st.sampled_from(["/search", "/feeds/search.atom", "/feeds/search.json"]),
       sort=st.sampled_from([None, "rank", "newest"]))
def test_no_query_gets_a_5xx(search_server, q, path, sort):
    import urllib.error
    import urllib.request

    target = f"{search_server}{path}?q={quote(q, errors='surrogatepass')}" + (f"&sort={sort}" if sort else "")
    try:
        with urllib.request.urlopen(target, timeout=30) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    assert status in (200, 400, 404), (q, status, body[:300])
    if status == 200 and path.endswith(".atom"):
        parsed = feedparser.parse(body)
        assert not parsed.bozo, (q, parsed.get("bozo_exception"))
    if status == 400:
        assert len(body.decode().strip().splitlines()) == 1 or path == "/search"


@pytest.mark.parametrize("q", ["rain", "cote OR shares", '"heavy rain" tag:africa', "abidjan -floods since:2025-01-01",
                               "rain tag:africa", "rain -storm tag:africa", "tag:africa until:2025-03-10",
                               "tag:africa -abidjan"])
def test_each_way_of_reading_the_index_finds_the_same_items(store, q):
    # SQLite reads a rare word's matches first, a common one's by date (see sqlite.text_plan),
    # among a tag's items when there is one to have: same answers, same counts.
    from aggregator.storage import search

    query = parse_query(q)
    with store.engine.connect() as connection:
        tag = search.required_tag(connection, query)
        plans = [search.Plan(words, *among) for words in ("first", "ordered", "probe")
                 for among in dict.fromkeys(((None, None), tag))]
        answers = {plan: connection.scalars(search.matching("sqlite", query, False, plan)).all() for plan in plans}
        counts = {plan: connection.scalar(search.counting("sqlite", query, 1000, plan)) for plan in plans}
    assert ("tag:" in q) == (tag[0] is not None)
    assert len(set(map(tuple, answers.values()))) == 1, answers
    assert set(counts.values()) == {len(answers[plans[0]])}
    assert answers[plans[0]]  # the queries find something
