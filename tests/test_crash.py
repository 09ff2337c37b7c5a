"""Nothing lost, nothing doubled: the daemon is killed with SIGKILL at random
moments while it ingests a thousand files, and restarted."""

import json
import random
import signal
import sqlite3
import time

import feedparser
from lxml import etree

from helpers import Daemon, get, run, wait_for

FILES = 1200
KILLS = 20


def make_corpus(folder):
    """Tag pages of three teasers each; every fourth file is the full article
    of a teaser seen earlier, so merges happen too."""
    folder.mkdir()
    for n in range(FILES):
        if n % 4 == 3:
            k = n - 3
            text = (f"Story {k} of the crash corpus\n\nOpening words of story {k}, told at length so "
                    f"that the teaser is a prefix of it, and the rest of the article follows here.\n\n"
                    f"A second paragraph only the full article of story {k} has.\n")
        else:
            tag = ("Alpha", "Beta", "Gamma")[n % 3]
            text = f"Contents tagged with {tag}\n\n" + "".join(
                f"  • Story {m} of the crash corpus\n\n    Opening words of story {m}, told at "
                f"length so that the teaser is a prefix …\n\n" for m in (n, n + 10_000, n + 20_000))
        (folder / f"page_{n:04}.txt").write_text(text)


def items(config):
    result = run(config, "items", "--json")
    assert result.returncode == 0, result.stderr
    return {i["id"]: i for i in json.loads(result.stdout)}


def story(item):
    return item["title"], item["summary"], item["content"], sorted(item["tags"]), sorted(item["sources"])


def test_sigkill_at_random_moments_loses_and_doubles_nothing(tmp_path):
    seeds = tmp_path / "seeds"
    make_corpus(seeds)
    clean_dir = tmp_path / "clean"
    clean_dir.mkdir()
    clean = Daemon(clean_dir, seeds)
    assert run(clean.config, "ingest", timeout=300).returncode == 0
    expected = items(clean.config)
    assert len(expected) == FILES // 4 * 3 * 3

    crash_dir = tmp_path / "crash"
    crash_dir.mkdir()
    daemon = Daemon(crash_dir, seeds)
    database = crash_dir / "state" / "agg.db"
    chance = random.Random(20261121)
    ids_seen = {}
    cut_short = 0  # kills that left some, not all, items stored
    for _ in range(KILLS):
        daemon.start()
        time.sleep(chance.uniform(0.4, 3.0))
        daemon.process.send_signal(signal.SIGKILL)
        daemon.process.wait()
        if not database.exists():
            continue
        with sqlite3.connect(database) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            titles = [row[0] for row in db.execute("SELECT title FROM items")]
        assert len(titles) == len(set(titles)), "an item was stored twice"
        stored = items(daemon.config)
        cut_short += 0 < len(stored) < len(expected)
        for guid, item in stored.items():
            assert ids_seen.setdefault(item["title"], guid) == guid, "an item changed its id"
        for path in (crash_dir / "public").rglob("*"):
            if path.is_file():
                assert not path.name.startswith("."), f"left over: {path}"
                if path.suffix in (".atom", ".rss"):
                    etree.parse(str(path))  # complete, well-formed XML
    assert cut_short >= 3, f"only {cut_short} kills landed during an ingest"

    daemon.start()
    daemon.ready(120)
    assert wait_for(lambda: json.loads(get(f"{daemon.base}/status.json"))["items"] == len(expected), 60)
    final = items(daemon.config)
    assert sorted(map(story, final.values())) == sorted(map(story, expected.values()))
    assert set(final) == set(expected)  # the same ids as one clean run
    # The same entries as the clean run's feed; the bytes differ only in the
    # `updated` times, which are when each run wrote the items.
    served = feedparser.parse(get(f"{daemon.base}/feeds/all.atom"))
    clean_feed = feedparser.parse((clean_dir / "public" / "all.atom").read_bytes())
    assert not served.bozo and len(served.entries) == 50

    def entry(e):
        return e.id, e.title, e.get("summary"), e.content[0].value if "content" in e else None

    assert list(map(entry, served.entries)) == list(map(entry, clean_feed.entries))
    assert daemon.stop() == 0
