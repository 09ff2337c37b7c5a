"""Plain text → Page with items. Pure: no files, no clock (the file's
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
from dataclasses import replace
from datetime import date, datetime, timezone

import dateutil.parser

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
# The heading of a page listing one tag's stories: "Contents tagged with X",
# "Posts tagged X", "Archive for X"; or with a colon, "Tag: X", "Topic: X" …
_TAG_HEADER = re.compile(
    r"^(?:(?:contents|posts|stories|articles|news)\s+tagged(?:\s+with)?\s*:?"
    r"|archives?\s+for(?:\s+the\s+(?:tag|topic|category))?\s*:?"
    r"|(?:tag|tagged(?:\s+with)?|topic|category)\s*:)"
    r"\s*[\"“'‘]?(?P<tag>.+?)[\"”'’]?$", re.I)
_YEAR = re.compile(r"\b(?:1[89]|20)\d\d\b")  # "Archive for March 2025" is dates, not a tag

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

# Lines a browser copies with the page that are never news: skip links,
# menus, account and cookie buttons, share bars, advertising, paging.
CHROME_LINES = frozenset("""
skip to content|skip to main content|skip to navigation|jump to content|menu|main menu|open menu|close menu
search|sign in|sign up|log in|login|log out|register|subscribe|subscribe now|my account|account
advertisement|advert|sponsored|ad|share|share this|share this article|share this story|share this page
facebook|twitter|x|whatsapp|linkedin|email|e-mail|reddit|telegram|pinterest|bluesky|threads|mastodon
copy link|link copied|print|comments|load more|show more|more stories|see more|view more|next page|previous page
top stories|latest|latest stories|most popular|accept|accept all|reject all|manage cookies|cookie settings
manage preferences|allow all|back to top|listen to this article|save|follow|follow us
""".strip().replace("\n", "|").split("|"))
# Headings that open the lists under an article or the site's footer: the
# page's text ends before them.
END_HEADINGS = frozenset("""
related|related stories|related articles|related content|related news|more on this story|more from
most read|most viewed|most popular|popular now|trending|trending now|you may also like|you might also like
read next|read more|recommended|recommended for you|more stories|more news|also in the news|elsewhere
""".strip().replace("\n", "|").split("|"))
_COPYRIGHT = re.compile(r"^(?:©|\(c\)\s|copyright\b)", re.I)
_COOKIES = re.compile(r"\bcookies?\b", re.I)
_COOKIE_NOTICE = re.compile(r"\b(?:we use|this (?:site|website) uses|accept|consent|privacy)\b", re.I)
_BYLINE = re.compile(r"^[Bb]y\s+[A-Z][\w.'’-]*(?:\s+(?:[A-Z][\w.'’-]*|and|&|,|de|van|von|da|di|la|le))*$")
_PUBLISHED = re.compile(r"^(?:first\s+)?(?:published|posted|updated|last\s+updated)\s*(?:on|at)?\s*:?\s+"
                        r"(?P<date>.{6,60})$", re.I)
# "Home | News | Sport" on one line: a menu.
_MENU_SEPARATORS = (" | ", " · ", " • ", " / ", " > ", " » ")

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
MAX_DATE_WORDS = 6
MAX_DATE_CHARS = 40
MAX_CHROME_CHARS = 120  # a menu, a button, a byline or a date line is short
HEADER_BLOCKS = 12  # a tag page's heading stands within its first blocks, under any menu


def clean_text(text: str) -> str:
    """Normalise decoded page text: NFC, LF line ends, no XML-forbidden
    characters, every run of inline white space (tabs, NBSP …) one space,
    no trailing spaces."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _XML_FORBIDDEN.sub("", text)
    return "\n".join(_INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))


def read_text(data: bytes, mtime: datetime) -> Page:
    """A plain-text seed file's bytes → Page; SeedError says why there is none."""
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


def tag_of_heading(line: str) -> str | None:
    """The tag a heading says its page lists ("Contents tagged with X",
    "Tag: X", "Archive for X" …), or None."""
    header = _TAG_HEADER.match(line.strip())
    if header is None:
        return None
    tag = header["tag"].strip()
    return tag if tag and not _YEAR.search(tag) else None


def is_chrome_line(line: str) -> bool:
    """A line of the site around the page, not of its news."""
    if "ookie" in line and _COOKIES.search(line) and _COOKIE_NOTICE.search(line) and len(line.split()) <= 60:
        return True
    if len(line) > MAX_CHROME_CHARS:  # news text: the test every teaser and paragraph takes, kept cheap
        return False
    folded = line.casefold().strip(" :·|•›»")
    if folded in CHROME_LINES:
        return True
    if _BYLINE.match(line) and len(line.split()) <= 8:
        return True
    parts = [p for sep in _MENU_SEPARATORS if sep in line for p in line.split(sep)]
    return len(parts) >= 3 and all(len(p.split()) <= 3 for p in parts)


def published_date(line: str) -> datetime | None:
    """The date of a "Published 12 March 2025" line."""
    match = _PUBLISHED.match(line) if len(line) <= MAX_CHROME_CHARS else None
    if match is None:
        return None
    try:
        found = dateutil.parser.parse(match["date"], fuzzy=True, default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        return None
    return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found.astimezone(timezone.utc)


def strip_chrome(blocks: list[list[str]]) -> tuple[list[list[str]], datetime | None]:
    """The page without what a browser copied around it: chrome lines, menus
    above it, and from the lists under an article or a copyright line on.
    Returns the blocks left and the date a "Published …" line gave."""
    published = None
    kept: list[list[str]] = []
    for block in blocks:
        if kept and len(block) == 1 and len(block[0]) <= MAX_CHROME_CHARS and (
                block[0].casefold().strip(" :") in END_HEADINGS or _COPYRIGHT.match(block[0])):
            break
        if all(len(line) > MAX_CHROME_CHARS and "ookie" not in line for line in block):
            kept.append(block)  # paragraphs of news: no chrome is that long
            continue
        lines = []
        for line in block:
            date = published_date(line)
            if date is not None:
                published = published or date
            elif not is_chrome_line(line):
                lines.append(line)
        if lines:
            kept.append(lines)
    # A menu copied as a column of short lines stands above the page.
    while len(kept) > 1 and len(kept[0]) >= 3 and all(len(line.split()) <= 3 for line in kept[0]):
        kept = kept[1:]
    return kept, published


def parse_page(text: str, mtime: datetime) -> Page:
    """Parse cleaned page text. Raises SeedError naming why a page holds no items."""
    blocks = blocks_of(text)
    if not blocks:
        raise SeedError("empty file: no text")
    # A tag page's heading, with or without a menu above it.
    for index, block in enumerate(blocks[:HEADER_BLOCKS]):
        tag = tag_of_heading(block[0]) if len(block) == 1 else None
        if tag:
            try:
                return parse_tag_page(tag, strip_chrome(blocks[index + 1 :])[0])
            except SeedError:
                if index == 0:  # the page opens with the heading: a tag page, empty
                    raise
            # A "Topic: X" line over something else (an article filed under X): not a list.
            blocks = blocks[:index] + blocks[index + 1 :]
            break
    blocks, published = strip_chrome(blocks)
    if not blocks:
        raise SeedError("no known layout: nothing but a site's menus and notices")
    while len(blocks) > 1 and is_title(blocks[0]) and blocks[0][0].casefold() in NAVIGATION_LINES:
        blocks = blocks[1:]
    if is_listing(blocks):
        return parse_listing(blocks)
    wire = parse_wire_article(blocks, mtime)
    if wire is not None:
        return wire
    page = parse_article(blocks)
    if published is not None:
        page = Page(page.layout, tuple(replace(item, published=published) for item in page.items))
    return page


def parse_tag_page(tag: str, blocks: list[list[str]]) -> Page:
    """Bulleted titles, each with its teaser; a copy that lost its bullets
    reads as a listing. Every item gets the tag."""
    if not any(len(b) == 1 and _BULLET_LINE.match(b[0]) for b in blocks) and is_listing(blocks):
        listing = parse_listing(blocks)
        return Page(layout="tag", items=tuple(replace(i, tags=(tag,)) for i in listing.items), tag=tag)
    items = []
    title: str | None = None
    body: list[str] = []

    def close() -> None:
        if title is not None and body:
            body[-1] = strip_teaser_marker(body[-1])[0]
            if item := teaser_item(title, body, (tag,)):
                items.append(item)

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


def date_line(line: str) -> datetime | None:
    """The date of a line that is nothing but a date with its year
    ("12 March 2025", "2025-03-12"), as listings show under a headline."""
    if len(line) > MAX_DATE_CHARS or len(line.split()) > MAX_DATE_WORDS or not _YEAR.search(line):
        return None
    try:
        found = dateutil.parser.parse(line, default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        return None
    return found.replace(tzinfo=timezone.utc) if found.tzinfo is None else found.astimezone(timezone.utc)


def teaser_item(title: str, paragraphs: list[str], tags: tuple[str, ...] = ()) -> ParsedItem | None:
    """A teaser from the paragraphs under its headline; a date line among
    them dates it instead of being text."""
    dated = [(p, date_line(p)) for p in paragraphs if p]
    dates = [date for _, date in dated if date is not None]
    text = "\n\n".join(p for p, date in dated if date is None)
    if not text:
        return None
    return ParsedItem(title=title, summary=text, published=dates[0] if dates else None, tags=tags)


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
            if item := teaser_item(title, body):
                items.append(item)
            title, body = None, []
    if title is not None and (item := teaser_item(title, body)):
        items.append(item)
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
