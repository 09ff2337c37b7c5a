"""Parse cases: each input file sits next to its expected result
(`<name>.expected.json`), so adding a case is adding two files."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from aggregator.ingest import read_page
from aggregator.model import Page

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
DEFAULT_MTIME = "2026-11-21T12:00:00+00:00"


def cases() -> list[tuple[Path, Path]]:
    """(input, expectation) pairs: the shipped seeds and tests/data/pages."""
    pairs = [(p, DATA / "seeds" / f"{p.name}.expected.json") for p in sorted((ROOT / "seeds").glob("*.txt"))]
    pairs += [(p, p.with_name(f"{p.name}.expected.json")) for p in sorted((DATA / "pages").glob("*.txt"))]
    return pairs


def page_json(page: Page, mtime: str) -> dict:
    return {
        "mtime": mtime,
        "layout": page.layout,
        "tag": page.tag,
        "items": [
            {
                "title": item.title,
                "summary": item.summary,
                "content": item.content,
                "published": item.published.isoformat() if item.published else None,
                "tags": list(item.tags),
            }
            for item in page.items
        ],
    }


def parse_case(source: Path, mtime: str) -> dict:
    page = read_page(source.read_bytes(), datetime.fromisoformat(mtime))
    return page_json(page, mtime)
