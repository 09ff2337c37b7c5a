"""Item identity measured on a labelled corpus, and properties that must hold
for any input."""

import json
import os
import random
import shutil
from datetime import datetime, timezone

from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from aggregator.errors import SeedError
from aggregator.evaluate import evaluate
from aggregator.ingest import run_once
from aggregator.read import read_page
from aggregator.read.text import _XML_FORBIDDEN
from aggregator.storage import Storage

from helpers import ROOT, SEEDS, FakeClock

CORPUS = ROOT / "tests" / "data" / "corpus"
LABELS = ROOT / "tests" / "data" / "corpus.expected.json"


def test_labelled_corpus_is_hard_enough():
    stories = json.loads(LABELS.read_text(encoding="utf-8"))["stories"]
    assert sum(len(s["sightings"]) for s in stories.values()) >= 60
    assert sum(len(s["sightings"]) > 1 for s in stories.values()) >= 10  # stories seen more than once


def test_identity_on_the_labelled_corpus_is_perfect():
    result = evaluate(CORPUS, LABELS)
    assert result.lines()[1:6] == ["precision: 1.000", "recall: 1.000", "wrong merges: 0",
                                   "missed merges: 0", "tag accuracy: 100.0%"], result.lines()
    assert result.perfect


def relabel(tmp_path, change):
    document = json.loads(LABELS.read_text(encoding="utf-8"))
    change(document["stories"])
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(document))
    return evaluate(CORPUS, path)


def test_evaluation_counts_a_missed_merge(tmp_path):
    def join(stories):  # claim the two weekly wraps are one story
        stories["wrap_a"]["sightings"] += stories.pop("wrap_b")["sightings"]
    result = relabel(tmp_path, join)
    assert result.recall < 1.0 and result.precision == 1.0
    assert result.wrong_merges == 0 and result.missed_merges == 1 and not result.perfect


def test_evaluation_counts_a_wrong_merge(tmp_path):
    def split(stories):  # claim the teaser and the article of one story are two
        sightings = stories["hydrogen"]["sightings"]
        stories["hydrogen_teaser"] = {"tags": stories["hydrogen"]["tags"], "sightings": [sightings.pop(0)]}
    result = relabel(tmp_path, split)
    assert result.precision < 1.0 and result.recall == 1.0 and result.wrong_merges == 1


def test_evaluation_checks_tags(tmp_path):
    result = relabel(tmp_path, lambda stories: stories["solar"].update(tags=["Energy", "Climate"]))
    assert result.tag_accuracy < 1.0 and any("tags of solar" in p for p in result.problems)


# Openings that send arbitrary bytes to each kind's reader.
OPENINGS = [("page.txt", b""), ("page.html", b""), ("page.html", b"<!DOCTYPE html><html><body><h1>"),
            ("feed.xml", b'<?xml version="1.0"?><rss version="2.0"><channel><item><title>'),
            ("feed.atom", b'<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>'),
            ("feed.json", b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"title": ')]


@given(st.sampled_from(OPENINGS), st.binary(max_size=2000))
@hsettings(max_examples=400, deadline=None)
def test_reading_arbitrary_bytes_never_raises_anything_but_a_seed_error(opening, tail):
    name, head = opening
    data = head + tail
    try:
        page = read_page(data, datetime(2026, 1, 1, tzinfo=timezone.utc), name)
    except SeedError as error:
        assert "\n" not in str(error)
        return
    for item in page.items:
        for text in (item.title, item.summary or "", item.content or "", item.link or "", *item.tags):
            assert not _XML_FORBIDDEN.search(text)
        assert item.title and item.text


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=600))
@hsettings(max_examples=300, deadline=None)
def test_parsed_text_never_holds_xml_forbidden_characters(text):
    try:
        page = read_page(text.encode("utf-8", "surrogatepass"), datetime(2026, 1, 1, tzinfo=timezone.utc))
    except SeedError:
        return
    for item in page.items:
        assert not any(_XML_FORBIDDEN.search(t) for t in (item.title, item.text, *item.tags))


def stories(storage):
    """Each item as what a reader sees, without its id (which depends on which sighting came first)."""
    return sorted(
        (i.title, i.summary, i.content, tuple(sorted(t.name.casefold() for t in i.tags)),
         tuple(sorted(i.sources)))
        for i in storage.all_items()
    )


def ingest_in_order(tmp_path, files, name):
    folder = tmp_path / name / "seeds"
    folder.mkdir(parents=True)
    for n, source in enumerate(files):
        shutil.copy(source, folder / source.name)
        stamp = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp() + n * 60
        os.utime(folder / source.name, (stamp, stamp))
    storage = Storage(f"sqlite:///{tmp_path / name / 'db.sqlite'}")
    clock = FakeClock()
    # Feed the files one scan at a time in the given order.
    staged = tmp_path / name / "staged"
    staged.mkdir()
    for source in sorted(folder.iterdir()):
        source.rename(staged / source.name)
    for source in files:
        (staged / source.name).rename(folder / source.name)
        clock.advance()
        run_once(storage, folder, clock=clock)
    return storage


def test_any_file_order_gives_the_same_stories(tmp_path):
    files = sorted(p for p in [*SEEDS.glob("*.txt"), *CORPUS.glob("c*.txt")])
    baseline = ingest_in_order(tmp_path, files, "sorted")
    expected = stories(baseline)
    guids = {i.guid for i in baseline.all_items()}
    baseline.close()
    for attempt in range(3):
        shuffled = files[:]
        random.Random(attempt).shuffle(shuffled)
        storage = ingest_in_order(tmp_path, shuffled, f"shuffled{attempt}")
        assert stories(storage) == expected
        storage.close()
    # From scratch in the same order, the ids are the same ones.
    again = ingest_in_order(tmp_path, files, "again")
    assert {i.guid for i in again.all_items()} == guids
    again.close()
