"""Page text → Page with items. Pure: no files, no clock (the file's
modification time is passed in to date wire articles).

Four layouts are recognised, tried in this order:

* tag page      first line "Contents tagged with <Tag>", items start with a
                bulleted title line, the last paragraph is cut off with "…";
* listing page  title, teaser paragraph ending in a "Read more" marker, repeated;
* wire article  optional navigation line, title, standfirst, then a body whose
                first paragraph starts with a dateline ("MOSCOW, December 17. /TASS/.");
* article       a title line, then the whole body.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timezone

from aggregator.errors import SeedError
from aggregator.model import Page, ParsedItem
from aggregator.seeds import decode

# Characters XML 1.0 forbids (everything below 0x20 but tab and newline, the
# surrogates, U+FFFE/U+FFFF). Dropped on reading so no feed can be broken.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
# Any white space but the newline, including non-breaking and other Unicode spaces.
_INLINE_SPACE = re.compile(r"[^\S\n]+")

BULLETS = "•*-·‣◦▪●"
_BULLET_LINE = re.compile(rf"^[{re.escape(BULLETS)}]\s+(?P<title>\S.*)$")
_TAG_HEADER = re.compile(r"^contents\s+tagged\s+with\s*:?\s*[\"“'‘]?(?P<tag>.+?)[\"”'’]?$", re.I)

_ELLIPSIS = r"(?:…|\.{3})"
_READ_MORE = r"(?:read\s+more|continue\s+reading)"
_ARROW = r"(?:»|→|›|>>)"
# An explicit "read more" link, optionally preceded by an ellipsis and followed
# by an arrow; or a bare ellipsis at the very end.
_EXPLICIT_MARKER = re.compile(
    rf"\s*(?:{_ELLIPSIS}\s*)?{_READ_MORE}\s*(?:{_ARROW}|{_ELLIPSIS})?\s*$", re.I
)
_BARE_ELLIPSIS = re.compile(rf"\s*{_ELLIPSIS}\s*$")

# Page chrome that precedes an article's title.
NAVIGATION_LINES = frozenset({"all news", "news", "home", "back", "back to news", "latest news"})

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"),
            ("may",), ("june", "jun"), ("july", "jul"), ("august", "aug"),
            ("september", "sep", "sept"), ("october", "oct"), ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
# "MOSCOW, December 17. /TASS/." or "PARIS, Jan 3, 2025 (AFP) -": the
# dateline that opens wire copy, with the white space after it.
DATELINE = re.compile(
    r"^(?P<place>[A-Z][A-Z.'\- ]*[A-Z.]),\s+(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2})"
    r"(?:,\s*(?P<year>\d{4}))?\.?\s*(?:/[^/\n]{1,20}/\.?|\([^)\n]{1,20}\)\s*[-–—])\s*"
)

MAX_TITLE_CHARS = 300


def clean_text(text: str) -> str:
    """Normalise decoded page text: NFC, LF line ends, no XML-forbidden
    characters, every run of inline white space (tabs, NBSP …) one space,
    no trailing spaces."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _XML_FORBIDDEN.sub("", text)
    return "\n".join(_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))


def read_page(data: bytes, mtime: datetime) -> Page:
    """A seed file's bytes → Page; SeedError says why there is none."""
    return parse_page(clean_text(decode(data)), mtime)


def blocks_of(text: str) -> list[list[str]]:
    """Split cleaned text into blocks of lines separated by blank lines.

    A bulleted line always stands as a block of its own, so a tag page item's
    title is never glued to its first paragraph."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if not line or _BULLET_LINE.match(line):
            if current:
                blocks.append(current)
                current = []
            if line:
                blocks.append([line])
            continue
        current.append(line)
    if current:
        blocks.append(current)
    return blocks


def paragraph(block: list[str]) -> str:
    return " ".join(block)


def strip_teaser_marker(text: str) -> tuple[str, bool]:
    """Remove a trailing "… Read more" (or "Continue reading", "Read more »",
    a bare "…") from a teaser; tell whether there was one."""
    for marker in (_EXPLICIT_MARKER, _BARE_ELLIPSIS):
        stripped, count = marker.subn("", text)
        if count:
            return stripped.rstrip(), True
    return text, False


def is_title(block: list[str]) -> bool:
    return len(block) == 1 and len(block[0]) <= MAX_TITLE_CHARS


def parse_page(text: str, mtime: datetime) -> Page:
    """Parse cleaned page text. Raises SeedError naming why a page holds no items."""
    blocks = blocks_of(text)
    if not blocks:
        raise SeedError("empty file: no text")
    header = _TAG_HEADER.match(paragraph(blocks[0])) if len(blocks[0]) == 1 else None
    if header:
        return parse_tag_page(header["tag"].strip(), blocks[1:])
    while blocks and len(blocks) > 1 and is_title(blocks[0]) and blocks[0][0].casefold() in NAVIGATION_LINES:
        blocks = blocks[1:]
    if is_listing(blocks):
        return parse_listing(blocks)
    wire = parse_wire_article(blocks, mtime)
    if wire is not None:
        return wire
    return parse_article(blocks)


def parse_tag_page(tag: str, blocks: list[list[str]]) -> Page:
    items = []
    title: str | None = None
    body: list[str] = []

    def close() -> None:
        if title is not None and body:
            body[-1] = strip_teaser_marker(body[-1])[0]
            text = "\n\n".join(p for p in body if p)
            if text:
                items.append(ParsedItem(title=title, summary=text, tags=(tag,)))

    for block in blocks:
        bullet = _BULLET_LINE.match(block[0]) if len(block) == 1 else None
        if bullet:
            close()
            title, body = bullet["title"].strip(), []
        elif title is not None:
            body.append(paragraph(block))
    close()
    if not items:
        raise SeedError(f"tag page for {tag!r} lists no items (no bulleted titles)")
    return Page(layout="tag", items=tuple(items), tag=tag)


def is_listing(blocks: list[list[str]]) -> bool:
    """A listing has a "Read more" link after a teaser, or at least two
    title + paragraph pairs cut off with an ellipsis. One bare ellipsis is not
    enough: an article may end with one."""
    paragraphs = [paragraph(b) for b in blocks]
    if any(_EXPLICIT_MARKER.search(p) for p in paragraphs[1:]):
        return True
    cut = [i for i, p in enumerate(paragraphs) if i > 0 and _BARE_ELLIPSIS.search(p)]
    return len(cut) >= 2 and all(is_title(blocks[i - 1]) for i in cut)


def parse_listing(blocks: list[list[str]]) -> Page:
    items = []
    title: str | None = None
    body: list[str] = []
    for block in blocks:
        text = paragraph(block)
        if title is None:
            if is_title(block) and not _EXPLICIT_MARKER.search(text):
                title = text
            continue
        teaser, ended = strip_teaser_marker(text)
        if teaser:
            body.append(teaser)
        if ended:
            if body:
                items.append(ParsedItem(title=title, summary="\n\n".join(body)))
            title, body = None, []
    if title is not None and body:
        items.append(ParsedItem(title=title, summary="\n\n".join(body)))
    if not items:
        raise SeedError("listing page holds no title followed by a teaser")
    return Page(layout="listing", items=tuple(items))


def parse_wire_article(blocks: list[list[str]], mtime: datetime) -> Page | None:
    """Title, standfirst (one or two paragraphs), then a dateline paragraph."""
    if len(blocks) < 3 or not is_title(blocks[0]):
        return None
    for index in range(1, min(len(blocks), 4)):
        first = paragraph(blocks[index])
        match = DATELINE.match(first)
        if match is None:
            continue
        published = dateline_date(match, mtime)
        if published is None:
            continue
        standfirst = "\n\n".join(paragraph(b) for b in blocks[1:index]) or None
        body = "\n\n".join(paragraph(b) for b in blocks[index:])
        item = ParsedItem(
            title=paragraph(blocks[0]), summary=standfirst, content=body, published=published
        )
        return Page(layout="wire", items=(item,))
    return None


def dateline_date(match: re.Match[str], mtime: datetime) -> datetime | None:
    """The dateline's day; without a year, the latest such day not after the
    file's modification time (a wire story is saved after it is filed)."""
    month = _MONTHS.get(match["month"].casefold())
    if month is None:
        return None
    day = int(match["day"])
    if match["year"]:
        candidates = [int(match["year"])]
    else:
        latest = mtime.astimezone(timezone.utc).date()
        candidates = list(range(latest.year, latest.year - 8, -1))
    for year in candidates:
        try:
            found = date(year, month, day)
        except ValueError:  # 29 February in a common year, 31 April …
            continue
        if match["year"] or found <= mtime.astimezone(timezone.utc).date():
            return datetime(found.year, found.month, found.day, tzinfo=timezone.utc)
    return None


def parse_article(blocks: list[list[str]]) -> Page:
    if not is_title(blocks[0]):
        raise SeedError(
            "no known layout: the first paragraph is not a title line "
            f"(one line of at most {MAX_TITLE_CHARS} characters)"
        )
    if len(blocks) < 2:
        raise SeedError("no known layout: a title with no text under it")
    body = "\n\n".join(paragraph(b) for b in blocks[1:])
    return Page(layout="article", items=(ParsedItem(title=paragraph(blocks[0]), content=body),))
