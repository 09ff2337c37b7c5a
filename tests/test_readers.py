"""Every feed as strict checkers and real readers see it: Atom against the
RELAX NG schema of RFC 4287 (lxml), RSS and JSON Feed against what their
specifications require, feedparser without a complaint, sfeed parsing the
served bytes, newsboat subscribing to the running server over loopback."""

import asyncio
import email.utils
import json
import shutil
import sqlite3
from datetime import datetime
from functools import cache

import feedparser
import pytest
import rnc2rng
from lxml import etree

from helpers import DATA

FEEDS = {"/feeds/all.atom": 30, "/feeds/all.rss": 30, "/feeds/tags/idlib.atom": 10, "/feeds/tags/assad.rss": 10}
ATOM = "{http://www.w3.org/2005/Atom}"
# Overall, tag, either tag, both tags (no item has both: an empty feed), and
# a middle page, in every format.
CHECKED = [f"/feeds/{name}.{fmt}{query}" for fmt in ("atom", "rss", "json") for name, query in [
    ("all", ""), ("tags/idlib", ""), ("tags/assad+idlib", ""), ("tags/assad,idlib", ""), ("all", "?limit=7&page=2")]]


@cache
def atom_schema() -> etree.RelaxNG:
    # rnc2rng declares the empty namespace RFC 4287 calls `local` as a
    # prefix, which XML forbids; the schema names it with ns="" anyway.
    rng = rnc2rng.dumps(rnc2rng.load(str(DATA / "schemas" / "atom.rnc"))).replace('xmlns:local=""', "")
    return etree.RelaxNG(etree.fromstring(rng.encode()))


def check_atom(body: bytes) -> int:
    root = etree.fromstring(body)
    schema = atom_schema()
    assert schema.validate(root), schema.error_log
    assert root.nsmap == {None: ATOM.strip("{}")}  # W3C: no second prefix for Atom's namespace
    entries = root.findall(f"{ATOM}entry")
    for field in ("id", "updated"):  # W3C: no two entries share one
        values = [entry.findtext(f"{ATOM}{field}") for entry in entries]
        assert len(values) == len(set(values)), field
    return len(entries)


def check_rss(body: bytes) -> int:
    channel = etree.fromstring(body).find("channel")
    assert all(channel.findtext(name) for name in ("title", "link", "description"))
    items = channel.findall("item")
    for item in items:
        assert item.findtext("title") and item.findtext("guid") and item.findtext("link")
        assert email.utils.parsedate_to_datetime(item.findtext("pubDate")).tzinfo is not None  # RFC 822
    assert len({item.findtext("guid") for item in items}) == len(items)
    return len(items)


def check_json(body: bytes) -> int:
    feed = json.loads(body)
    assert feed["version"] == "https://jsonfeed.org/version/1.1" and feed["title"]
    for item in feed["items"]:
        assert isinstance(item["id"], str) and ("content_html" in item or "content_text" in item)
        for field in ("date_published", "date_modified"):
            assert datetime.fromisoformat(item[field]).tzinfo is not None  # RFC 3339, with its offset
    assert len({item["id"] for item in feed["items"]}) == len(feed["items"])
    return len(feed["items"])


CHECKS = {"atom": check_atom, "rss": check_rss, "json": check_json}


@pytest.mark.parametrize("path", CHECKED)
async def test_every_kind_of_feed_passes_the_strict_checks(served, path):
    client, _base = served
    response = await client.get(path)
    assert response.status == 200
    body = await response.read()
    fmt = path.split("?")[0].rsplit(".", 1)[1]
    count = CHECKS[fmt](body)
    if fmt != "json":
        parsed = feedparser.parse(body)
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert len(parsed.entries) == count
        rows = (await run(need("sfeed"), stdin=body)).splitlines()
        assert len(rows) == count
    assert (count == 0) == path.startswith("/feeds/tags/assad,idlib")


def test_the_atom_schema_refuses_what_rfc_4287_does():
    """The schema check can fail: an entry without its id, a feed without updated."""
    entry = (f'<feed xmlns="{ATOM.strip("{}")}"><id>urn:x</id><title>t</title><updated>2025-01-01T00:00:00Z</updated>'
             '<author><name>a</name></author>{}</feed>')
    assert atom_schema().validate(etree.fromstring(entry.format("")))
    assert not atom_schema().validate(etree.fromstring(entry.format(
        "<entry><title>t</title><updated>2025-01-01T00:00:00Z</updated></entry>")))
    assert not atom_schema().validate(etree.fromstring(entry.format("").replace(
        "<updated>2025-01-01T00:00:00Z</updated>", "")))


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (Debian package {tool}; .ci/run installs it)")
    return path


async def run(*command: str, stdin: bytes = b"", cwd=None, env=None) -> str:
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=cwd, env=env)
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.mark.parametrize("path,count", FEEDS.items())
async def test_sfeed_reads_every_entry(served, path, count):
    sfeed = need("sfeed")
    client, base = served
    body = await (await client.get(path)).read()
    rows = [line.split("\t") for line in (await run(sfeed, stdin=body)).splitlines()]
    assert len(rows) == count
    ids = [entry.id for entry in feedparser.parse(body).entries]
    assert [row[5] for row in rows] == ids  # sfeed's id column
    assert all(int(row[0]) > 0 for row in rows)  # every date understood
    assert all(row[1] and row[2].startswith(base + "/items/") for row in rows)


async def test_newsboat_subscribes_over_loopback(served, tmp_path):
    newsboat = need("newsboat")
    client, base = served
    urls = tmp_path / "urls"
    urls.write_text(f"{base}/feeds/all.atom\n")
    config = tmp_path / "config"
    config.write_text("")
    cache = tmp_path / "cache.db"
    out = await run(newsboat, "-u", str(urls), "-c", str(cache), "-C", str(config), "-x", "reload",
                    "print-unread", cwd=tmp_path, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.strip() == "30 unread articles"
    with sqlite3.connect(cache) as db:
        guids = {row[0] for row in db.execute("SELECT guid FROM rss_item")}
    body = await (await client.get("/feeds/all.atom")).read()
    assert guids == {entry.id for entry in feedparser.parse(body).entries}


async def test_sfeed_update_subscribes_over_loopback(served, tmp_path):
    sfeed_update = need("sfeed_update")
    need("curl")  # sfeed_update fetches with curl
    _client, base = served
    rc = tmp_path / "sfeedrc"
    rc.write_text(f'sfeedpath="{tmp_path}/feeds"\n'
                  f'feeds() {{\n  feed "all" "{base}/feeds/all.atom"\n'
                  f'  feed "idlib" "{base}/feeds/tags/idlib.rss"\n}}\n')
    await run(sfeed_update, str(rc), env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    rows = {name: (tmp_path / "feeds" / name).read_text().splitlines() for name in ("all", "idlib")}
    assert (len(rows["all"]), len(rows["idlib"])) == (30, 10)
    assert all(row.split("\t")[2].startswith(f"{base}/items/") for row in rows["all"])
