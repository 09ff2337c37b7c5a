"""Real feed readers from Debian read our feeds: sfeed parses the served
bytes, newsboat subscribes to the running server over loopback."""

import asyncio
import shutil
import sqlite3

import feedparser
import pytest

FEEDS = {"/feeds/all.atom": 30, "/feeds/all.rss": 30, "/feeds/tags/idlib.atom": 10, "/feeds/tags/assad.rss": 10}


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
