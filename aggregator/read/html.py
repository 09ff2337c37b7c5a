"""Saved HTML pages → Page: an article, a listing, a tag page, or nothing
(an error page, a login or consent wall). lxml parses; trafilatura finds an
article's main text and htmldate its date where no markup gives one. The
declared charset decides the decoding. No regular expressions over markup."""

from __future__ import annotations

import codecs
import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timezone
from email.message import Message
from urllib.parse import urljoin, urlsplit

import lxml.html
import trafilatura
from lxml import etree

from aggregator.errors import SeedError, first_line
from aggregator.model import Page, ParsedItem
from aggregator.names import canonical_link
from aggregator.read.text import clean_text, is_chrome_line, strip_teaser_marker, tag_of_heading
from aggregator.seeds import BOMS, decode

# Elements whose end ends a paragraph of text.
BLOCKS = frozenset("address article aside blockquote br dd div dl dt figcaption figure footer form h1 h2 h3 "
                   "h4 h5 h6 header hr li main nav ol p pre section table td th tr ul".split())
NOT_TEXT = ("script", "style", "noscript", "template", "svg", etree.Comment)
# Page furniture: never an item, nor part of one's text.
FURNITURE_TAGS = frozenset({"nav", "header", "footer", "aside", "form", "menu"})
# Words of class, id and role names that mark furniture, matched as whole words.
FURNITURE_WORDS = frozenset("""nav navbar navigation menu footer related popular mostread most read share
sharing social cookie cookies consent newsletter breadcrumb breadcrumbs pagination pager sidebar trending
promo advert ad ads banner masthead skip""".split()) - {"most", "read"}
FURNITURE_PAIRS = ("most read", "most viewed", "more from", "read next")
# What an error page, a login or a consent wall calls itself, in full.
NOT_A_PAGE = frozenset({
    "page not found", "not found", "404", "404 not found", "error 404", "404 page not found", "error",
    "access denied", "forbidden", "sign in", "log in", "login", "sign in to continue",
    "sign in to continue reading", "log in to continue reading", "subscribe to continue reading",
    "subscribe to read", "subscribe to read this article", "your privacy settings", "privacy settings",
    "cookie settings", "we value your privacy", "before you continue", "consent"})
TITLE_SEPARATORS = (" | ", " - ", " – ", " — ", " :: ")
# WHATWG: pages labelled Latin-1 or ASCII are read as windows-1252, as browsers do.
ENCODING_ALIASES = {"iso-8859-1": "cp1252", "latin1": "cp1252", "latin-1": "cp1252", "l1": "cp1252",
                    "us-ascii": "cp1252", "ascii": "cp1252", "iso8859-1": "cp1252", "cp819": "cp1252"}
SAVED_FROM = "saved from url=("  # then the address's length, ")", the address
TAG_PATHS = ("tag", "tags", "topic", "topics", "category", "categories")
ARTICLE_TYPES = {"newsarticle", "article", "blogposting", "reportagenewsarticle", "analysisnewsarticle"}
MIN_TEASER_WORDS = 8
MIN_PARAGRAPH_WORDS = 4
MIN_HEADLINE_WORDS = 2
MIN_ARTICLE_WORDS = 40


# --- bytes → tree ---------------------------------------------------------------


def declared_encoding(data: bytes) -> str | None:
    """The charset a page declares in <meta charset> or <meta http-equiv>."""
    try:
        probe = lxml.html.document_fromstring(data[:4096], parser=lxml.html.HTMLParser(encoding="iso-8859-1"))
    except (etree.ParserError, ValueError):
        return None
    for meta in probe.iter("meta"):
        charset = meta.get("charset")
        if not charset and (meta.get("http-equiv") or "").lower() == "content-type":
            header = Message()
            header["content-type"] = meta.get("content") or ""
            charset = header.get_param("charset")
        if charset and isinstance(charset, str):
            name = charset.strip().lower()
            name = ENCODING_ALIASES.get(name, name)
            try:
                return codecs.lookup(name).name
            except LookupError:
                return None
    return None


def decode_html(data: bytes) -> str:
    """A byte order mark decides, then the declared charset, then as any seed file."""
    if not any(data.startswith(bom) for bom, _ in BOMS) and (encoding := declared_encoding(data)):
        return data.decode(encoding, errors="replace")
    return decode(data)


def parse_html(markup: str) -> lxml.html.HtmlElement:
    try:
        return lxml.html.document_fromstring(clean_text(markup))
    except (etree.ParserError, ValueError) as error:
        raise SeedError(f"HTML page lxml cannot parse: {error}") from None


# --- text of elements -------------------------------------------------------------


def block_text(element: lxml.html.HtmlElement) -> str:
    """Visible text as paragraphs: each block element ends one."""
    element = lxml.html.fromstring(lxml.html.tostring(element))  # a copy: tails are changed below
    for dropped in list(element.iter(*NOT_TEXT)):
        dropped.drop_tree()
    for block in element.iter(*BLOCKS):
        block.text = "\n\n" + (block.text or "")
        block.tail = "\n\n" + (block.tail or "")
    paragraphs = (" ".join(part.split()) for part in element.text_content().split("\n\n"))
    return "\n\n".join(p for p in paragraphs if p)


def fragment_text(markup: str) -> str:
    """An HTML fragment (or plain text) as paragraphs of plain text."""
    if "<" not in markup:
        paragraphs = (" ".join(part.split()) for part in clean_text(markup).split("\n\n"))
        return "\n\n".join(p for p in paragraphs if p)
    try:
        root = lxml.html.fragment_fromstring(clean_text(markup), create_parent="div")
    except (etree.ParserError, ValueError):
        return ""
    return block_text(root)


def line_text(element: lxml.html.HtmlElement) -> str:
    return " ".join(element.text_content().split())


def is_furniture(element: lxml.html.HtmlElement) -> bool:
    """Inside a menu, header, footer, sidebar, share bar, cookie notice …
    (the page's own <body> and <html> say nothing of the kind)."""
    for node in element.iterancestors():
        if node.tag in FURNITURE_TAGS:
            return True
        if node.tag in ("body", "html"):
            break
        marks = f"{node.get('class', '')} {node.get('id', '')} {node.get('role', '')}".lower()
        words = " ".join(marks.replace("-", " ").replace("_", " ").split())
        if FURNITURE_WORDS.intersection(words.split()) or any(pair in words for pair in FURNITURE_PAIRS):
            return True
    return False


# --- what the page says about itself ----------------------------------------------------


def meta(tree, *names: str) -> list[str]:
    """Values of <meta property|name="…"> in page order."""
    wanted = {name.lower() for name in names}
    return [value.strip() for element in tree.iter("meta")
            if ((element.get("property") or element.get("name") or "").lower() in wanted)
            and (value := element.get("content") or "").strip()]


def json_ld(tree) -> Iterator[dict]:
    """Every JSON-LD object on the page, @graph members included."""
    for script in tree.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json":
            continue
        try:
            document = json.loads(script.text or "")
        except ValueError:
            continue
        pending = document if isinstance(document, list) else [document]
        while pending:
            node = pending.pop(0)
            if isinstance(node, dict):
                yield node
                pending.extend(g for g in node.get("@graph", []) if isinstance(g, dict))


def article_ld(tree) -> dict:
    for node in json_ld(tree):
        types = node.get("@type")
        types = types if isinstance(types, list) else [types]
        if any(isinstance(t, str) and t.lower() in ARTICLE_TYPES for t in types):
            return node
    return {}


def moment(value: object) -> datetime | None:
    """An ISO 8601 date and time as pages and feeds write it ("Z" too); UTC
    when it names no zone; None for anything else."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        found = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=timezone.utc)


def page_address(tree) -> str | None:
    """The page's own address: canonical link, else og:url, else <base>."""
    for link in tree.iter("link"):
        if "canonical" in (link.get("rel") or "").lower().split() and link.get("href"):
            return link.get("href").strip()
    for value in meta(tree, "og:url"):
        return value
    for base in tree.iter("base"):
        if base.get("href"):
            return base.get("href").strip()
    # A browser saving a whole page notes where it came from in a comment.
    for comment in [*tree.itersiblings(etree.Comment, preceding=True), *tree.iter(etree.Comment)]:
        text = (comment.text or "").strip()
        if text.startswith(SAVED_FROM):
            return text.removeprefix(SAVED_FROM).partition(")")[2].strip() or None
    return None


def keywords(value: object) -> list[str]:
    if isinstance(value, str):
        return [word.strip() for word in value.split(",") if word.strip()]
    if isinstance(value, list):
        return [word.strip() for word in value if isinstance(word, str) and word.strip()]
    return []


# --- the page as a whole ------------------------------------------------------------------


def headline(tree, ld: dict) -> str | None:
    """og:title, JSON-LD headline, or the first <h1>; never <title>, which
    carries the site's name."""
    for candidate in [*meta(tree, "og:title"), ld.get("headline")]:
        if isinstance(candidate, str) and candidate.strip():
            return " ".join(candidate.split())
    for h1 in tree.iter("h1"):
        if text := line_text(h1):
            return text
    return None


def says_not_a_page(tree) -> str | None:
    """What an error page, login or consent wall calls itself (its heading,
    or its title before the site's name), when that is all it says: a
    headline such as "Error in vote count" is news."""
    for element in [*tree.iter("h1"), *tree.iter("title")]:
        text = line_text(element)
        name = text
        for separator in TITLE_SEPARATORS:
            name = name.split(separator)[0]
        if name.casefold().strip(" .!:") in NOT_A_PAGE:
            return text
    return None


def tag_of_page(tree, address: str | None) -> str | None:
    """The tag a listing is about: its heading ("Contents tagged with X",
    "Topic: X" …), or its address (…/tag/x)."""
    for element in [*tree.iter("h1"), *tree.iter("h2")]:
        if tag := tag_of_heading(line_text(element)):
            return tag
    if address:
        parts = [part for part in urlsplit(address).path.split("/") if part]
        for kind, name in itertools.pairwise(parts):
            if kind.lower() in TAG_PATHS:
                h1 = next((line_text(h) for h in tree.iter("h1")), "")
                return h1 or name.replace("-", " ").title()
    return None


def teasers(tree, base: str | None) -> list[ParsedItem]:
    """Repeated blocks of a headline link with a teaser under it. Links
    without teasers (menus, "Most read", pagination) are not items."""
    headings = [link for link in tree.iter("a") if link.get("href") and is_headline(link)
                and not is_furniture(link)]
    # How many headlines each element holds: one pass up from each headline.
    holds: dict[lxml.html.HtmlElement, int] = {}
    for link in headings:
        for node in link.iterancestors():
            holds[node] = holds.get(node, 0) + 1
    items = []
    for link in headings:
        block = link
        # Climb to the largest block that holds this headline and no other.
        while (parent := block.getparent()) is not None and parent.tag not in ("body", "html") \
                and holds[parent] == 1:
            block = parent
        title = line_text(link)
        # Lines of a few words around a teaser are its date, section or byline.
        paragraphs = [p for p in block_text(block).split("\n\n")
                      if p != title and not p.startswith(title) and len(p.split()) >= MIN_PARAGRAPH_WORDS]
        teaser = "\n\n".join(text for p in paragraphs if (text := strip_teaser_marker(p)[0]))
        if len(teaser.split()) < MIN_TEASER_WORDS:
            continue
        times = [moment(t.get("datetime")) for t in block.iter("time")]
        href = urljoin(base, link.get("href")) if base else link.get("href")
        items.append(ParsedItem(title=title, summary=teaser, published=next((t for t in times if t), None),
                                link=canonical_link(href)))
    return items


def is_headline(link: lxml.html.HtmlElement) -> bool:
    """A link that is a story's headline: in or around a heading, in bold, or
    marked as a title, and of a few words at least."""
    if len(line_text(link).split()) < MIN_HEADLINE_WORDS:
        return False
    near = [link, *itertools.islice(link.iterancestors(), 2)]
    if any(node.tag in ("h1", "h2", "h3", "h4", "h5", "h6", "b", "strong") for node in near):
        return True
    if any(True for _ in link.iter("h2", "h3", "h4", "b", "strong")):
        return True
    marks = f"{link.get('class', '')} {link.getparent().get('class', '') if link.getparent() is not None else ''}"
    return "title" in marks.lower() or "headline" in marks.lower()


def read_article(markup: str, tree, ld: dict, address: str | None) -> ParsedItem | None:
    title = headline(tree, ld)
    if title is None:
        return None
    # Precision first: it leaves out more of the page around the article. An
    # old table layout gives it nothing, and the balanced reading finds it.
    for precise in (True, False):
        extracted = trafilatura.bare_extraction(
            markup, with_metadata=True, favor_precision=precise, include_comments=False,
            include_tables=False, include_images=False, deduplicate=False)
        if extracted is not None and extracted.text:
            break
    else:
        return None
    lines = [" ".join(line.split()) for line in extracted.text.split("\n")]
    body = "\n\n".join(line for line in lines if line and line != title and not is_chrome_line(line))
    if len(body.split()) < MIN_ARTICLE_WORDS:
        return None
    published = next(filter(None, (moment(v) for v in [
        *meta(tree, "article:published_time", "og:published_time", "date", "pubdate"),
        ld.get("datePublished"),
        *(t.get("datetime") for t in tree.iter("time"))])), None)
    if published is None and extracted.date:  # htmldate's reading of the page
        published = moment(extracted.date)
    tags = [*meta(tree, "article:tag"), *keywords(ld.get("keywords"))]
    return ParsedItem(title=title, content=body, published=published,
                      tags=tuple(dict.fromkeys(tags)), link=canonical_link(address or ""))


def read_html(data: bytes) -> Page:
    try:
        return _read_html(data)
    except (etree.LxmlError, ValueError, TypeError, RecursionError) as error:  # hostile markup
        raise SeedError(f"HTML page that cannot be read: {first_line(error)}") from None


def _read_html(data: bytes) -> Page:
    markup = decode_html(data)
    tree = parse_html(markup)
    if (said := says_not_a_page(tree)) is not None:
        raise SeedError(f"not a news page: it says {said!r}")
    ld = article_ld(tree)
    address = page_address(tree)
    listed = teasers(tree, address)
    tag = tag_of_page(tree, address)
    if tag and listed:
        return Page(layout="tag", items=tuple(replace(item, tags=(tag,)) for item in listed), tag=tag)
    says_article = bool(ld) or "article" in meta(tree, "og:type")
    if says_article or len(listed) < 2:
        article = read_article(markup, tree, ld, address)
        if article is not None:
            return Page(layout="article", items=(article,))
    if len(listed) >= 2:
        return Page(layout="listing", items=tuple(listed))
    raise SeedError("HTML page with no article text and no listing of stories")

