import json
from datetime import datetime, timezone

import pytest

from aggregator.errors import SeedError
from aggregator.read import read_page
from aggregator.read.text import clean_text, parse_page

from helpers import DEFAULT_MTIME, cases, parse_case, seed_page

CASES = cases()


@pytest.mark.parametrize("source,expected", CASES, ids=[s.name for s, _ in CASES])
def test_page_parses_as_expected(source, expected):
    want = json.loads(expected.read_text(encoding="utf-8"))
    assert parse_case(source, want.get("mtime", DEFAULT_MTIME)) == want


def test_every_case_has_an_expectation():
    assert len(CASES) >= 9
    missing = [str(e) for _, e in CASES if not e.exists()]
    assert not missing


def test_shipped_seeds_have_their_layouts_and_counts():
    pages = [seed_page(p) for p in ("000", "001", "002", "003", "004")]
    assert [p.layout for p in pages] == ["listing", "tag", "article", "wire", "tag"]
    assert [len(p.items) for p in pages] == [9, 10, 1, 1, 10]
    assert pages[1].tag == "Idlib" and pages[4].tag == "Assad"
    assert all(item.tags == ("Idlib",) for item in pages[1].items)


def test_page_chrome_never_becomes_text():
    chrome = ("Read more", "Contents tagged", "All news", "•")
    for prefix in ("000", "001", "002", "003", "004"):
        for item in seed_page(prefix).items:
            assert not any(c in item.title for c in chrome), item.title
            for text in filter(None, (item.summary, item.content)):
                assert not text.endswith(("…", "...", "Read more")), text[-40:]
                assert "Contents tagged" not in text and not text.startswith("All news")


def test_teaser_with_stray_leading_space_is_trimmed():
    item = seed_page("000").items[6]
    assert item.summary.startswith("The Russian Defense Ministry announced")


@pytest.mark.parametrize(
    "mtime,year",
    [("2026-12-17T23:00:00+00:00", 2026), ("2026-12-16T23:00:00+00:00", 2025), ("2027-01-02T00:00:00+00:00", 2026)],
)
def test_dateline_year_is_latest_not_after_mtime(mtime, year):
    text = "All news\n\nTitle here\n\nStandfirst.\n\nMOSCOW, December 17. /TASS/. Body text follows."
    page = parse_page(clean_text(text), datetime.fromisoformat(mtime))
    assert page.layout == "wire"
    assert page.items[0].published == datetime(year, 12, 17, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty file"),
        (b"  \n\t\n", "empty file"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        (("A very long first paragraph that reads like body text. " * 10).encode(), "no known layout"),
        (b"Only a title line", "no known layout"),
        (b"Contents tagged with Nothing\n\nno bullets here\n", "lists no items"),
    ],
)
def test_files_without_items_say_why(data, reason):
    with pytest.raises(SeedError) as caught:
        read_page(data, datetime(2026, 11, 21, tzinfo=timezone.utc))
    message = str(caught.value)
    assert reason in message and "\n" not in message


def test_clean_text_drops_xml_forbidden_characters_and_folds_space():
    cleaned = clean_text("Ti\x00tle\x0b\r\nbody\xa0\t text\ufffe \r\n")
    assert cleaned == "Title\nbody text\n"
