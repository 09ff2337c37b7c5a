"""The command line as a user runs it, in a subprocess."""

import json
import signal
import subprocess
import sys
import time
import urllib.request

import feedparser
import pytest

from helpers import ROOT, free_port, run


@pytest.fixture
def config(tmp_path, seed_dir):
    path = tmp_path / "config.toml"
    port = free_port()
    path.write_text(
        f'[seeds]\ndir = "seeds"\ninterval_seconds = 3600\n'
        f'[database]\nurl = "sqlite:///state/agg.db"\n'
        f'[server]\nport = {port}\nbase_url = "http://127.0.0.1:{port}"\n'
        f'[feeds]\nexport_dir = "public"\n'
    )
    return path


def aggregator(config, *args):
    result = subprocess.run([sys.executable, "-m", "aggregator", "--config", str(config), *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_ingest_twice_reports_no_new_items_the_second_time(config):
    first = aggregator(config, "ingest")
    assert "files: 5 seen, 5 changed, 0 skipped, 0 failed, 0 gone" in first
    assert "items: 30 new, 1 updated" in first
    second = aggregator(config, "ingest")
    assert "files: 5 seen, 0 changed, 0 skipped, 0 failed, 0 gone" in second
    assert "items: 0 new, 0 updated" in second
    exported = sorted(p.relative_to(config.parent / "public").as_posix()
                      for p in (config.parent / "public").rglob("*") if p.is_file())
    assert exported == ["all.atom", "all.json", "all.rss", "tags/assad.atom", "tags/assad.json",
                        "tags/assad.rss", "tags/idlib.atom", "tags/idlib.json", "tags/idlib.rss"]


def test_items_tags_and_sources_listings(config):
    aggregator(config, "ingest")
    items = json.loads(aggregator(config, "items", "--json"))
    assert len(items) == 30
    assert set(items[0]) == {"id", "key", "title", "tags", "summary", "content", "published", "updated", "sources",
                             "link"}
    assert all(i["link"] is None for i in items)  # no shipped text page gives an address
    merged = [i for i in items if len(i["sources"]) == 2]
    assert [i["title"] for i in merged] == ["Russia and Israel resume military cooperation in Syria"]
    assert sum("Idlib" in i["tags"] for i in items) == 10
    assert aggregator(config, "tags").splitlines() == ["Assad\tassad\t10", "Idlib\tidlib\t10"]
    sources = aggregator(config, "sources").splitlines()
    assert sources[0] == "ok\t000_80a9e1c70313a31c.txt\t9 items" and len(sources) == 5
    assert sources[2] == "ok\t002_8df2fe3ddce01457.txt\t1 item"


def test_export_to_another_folder(config, tmp_path):
    aggregator(config, "ingest")
    out = aggregator(config, "export", str(tmp_path / "static"))
    assert out == f"9 of 9 feed files written to {tmp_path / 'static'}\n"
    again = aggregator(config, "export", str(tmp_path / "static"))
    assert again == f"all 9 feed files in {tmp_path / 'static'} were up to date\n"
    feed = feedparser.parse((tmp_path / "static" / "tags" / "idlib.atom").read_bytes())
    assert not feed.bozo and len(feed.entries) == 10


def test_serve_answers_with_all_feeds_and_stops_cleanly_on_sigterm(config):
    port = int(config.read_text().split("port = ")[1].split("\n")[0])
    process = subprocess.Popen([sys.executable, "-m", "aggregator", "--config", str(config), "serve"],
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline, feed = time.monotonic() + 10, None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/feeds/all.atom", timeout=2) as r:
                    feed = feedparser.parse(r.read())
                if len(feed.entries) == 30:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert feed is not None and len(feed.entries) == 30, "no full feed within 10 seconds"
        for path, count in (("tags/idlib.atom", 10), ("tags/assad.rss", 10)):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/feeds/{path}", timeout=5) as r:
                assert len(feedparser.parse(r.read()).entries) == count
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "000_80a9e1c70313a31c.txt: listing page, 9 items" in stderr


def run_aggregator(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "aggregator", *args], capture_output=True, text=True,
                          timeout=120, **kwargs)


def test_options_work_before_or_after_the_command(config):
    aggregator(config, "ingest")
    after = run_aggregator("tags", "--config", str(config), "--log-format", "json")
    assert after.returncode == 0, after.stderr
    assert after.stdout.splitlines() == ["Assad\tassad\t10", "Idlib\tidlib\t10"]
    # Given before and not after, the value before is kept.
    assert run_aggregator("--config", str(config), "tags").stdout == after.stdout


def test_a_reader_that_stops_early_gets_no_traceback(config):
    aggregator(config, "ingest")
    for command in (["items"], ["items", "--json"]):
        process = subprocess.Popen([sys.executable, "-m", "aggregator", "--config", str(config), *command],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        process.stdout.read(20)  # a `head -c 20`, then the pipe closes
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(timeout=60)
        assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
        assert process.returncode in (0, 128 + signal.SIGPIPE)


@pytest.mark.parametrize("args,says", [
    (["eval", "seeds", "missing.json"], "cannot be read: No such file or directory"),
    (["eval", "/nonexistent", "missing.json"], "is not a folder of seed files"),
    (["eval", "seeds", "labels.json"], "unusable: no 'stories' in a story or at the top"),
])
def test_eval_with_bad_arguments_says_what_is_wrong_in_one_line(config, args, says):
    (config.parent / "labels.json").write_text("{}")
    result = run_aggregator("--config", str(config), *args, cwd=config.parent)
    assert result.returncode == 1
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_make_alone_prints_help_and_clean_removes_every_exported_feed():
    help_text = subprocess.run(["make", "-s"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "make test" in help_text.stdout and "pip" not in help_text.stdout
    clean = subprocess.run(["make", "-n", "clean"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "feeds/*.json" in clean.stdout and "feeds/*.opml" in clean.stdout


def test_db_check_of_a_database_not_made_yet_says_so_and_makes_none(config):
    database = config.parent / "state" / "agg.db"
    check = run(config, "db", "check")
    assert check.returncode == 1
    assert check.stderr == f"no database at {database} yet: `aggregator db upgrade` creates it\n"
    assert not database.exists()
    assert run(config, "db", "upgrade").returncode == 0 and run(config, "db", "check").returncode == 0
