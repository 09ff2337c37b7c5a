"""Identity of news items: keys, fingerprints and the decision whether a new
sighting is an item already stored. Pure: data in, decision out.

A false merge silently loses a story, a missed one shows a story twice; the
rules below therefore merge only on evidence in the address or the text:

0. the same original address (a page's canonical link, a feed entry's link),
   or the same feed entry (its own id), whatever the texts say;
1. same normalised title and compatible texts (one contains the other, or
   near-duplicates);
2. a teaser contained in a longer text (as its prefix, or with at least 90 %
   of its word shingles) whatever the titles;
3. near-duplicate texts (Jaccard similarity of word shingles ≥ 0.8) under
   different titles: an edited headline.

Candidates come from indexed keys (address, title, opening words, SimHash
bands after Manku, Jain and Das Sarma 2007), so a lookup never scans all items.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import operator
import re
import threading
import unicodedata
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timezone
from itertools import chain, repeat
from typing import Any, NamedTuple

import cachetools

from aggregator.model import BANDS, Fingerprint, ItemUpdate, KeyKind, KnownItem, PagePlan, ParsedItem, PlannedItem
from aggregator.names import tag_key
from aggregator.read.text import DATELINE

# Key kinds as the plain strings the store holds: keys are hashed at every
# lookup, and an enum member hashes through a Python method, four times slower.
TITLE, LEAD, LINK, ENTRY, TOPIC = (kind.value for kind in (KeyKind.TITLE, KeyKind.LEAD, KeyKind.LINK,
                                                           KeyKind.ENTRY, KeyKind.TOPIC))
BAND_KINDS = tuple(kind.value for kind in BANDS)
MIDNIGHT = time(0, 0, tzinfo=timezone.utc)
UNSIGNED_64 = (1 << 64) - 1
SHINGLE_WORDS = 3
LEAD_WORDS = 12  # opening words that key a text; teasers share them with their article
MIN_WORDS_FOR_TEXT_MATCH = 12  # shorter texts only merge under the same title
CONTAINMENT = 0.9
NEAR_DUPLICATE = 0.8
# A SimHash band is 16 bits, so in a store of a million items every band value
# is shared by chance with some fifteen others. Texts that really are close
# differ in a few bits; two unrelated ones in about 32 of 64.
MAX_SIMHASH_DISTANCE = 12
# Within a page, a key (a stock headline, a chance SimHash band, a topic word
# pair) keeps its newest this many items: as many as the store's lookup reads.
MAX_HOLDERS_PER_KEY = 50

# Items get uuid5 ids in this namespace, so a clean run over the same files
# gives the same ids; the id is stored at first sighting and never recomputed.
ID_NAMESPACE = uuid.UUID("6f1c3a52-2d0e-4b8f-9d7a-3c5e1b2a4f60")

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"',
                         "‟": '"', "«": '"', "»": '"', "′": "'", "″": '"'})
_DASHES = re.compile("[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_TRAILING = re.compile(r"[\s.,;:!?…'\"\-]+$")
_WORD = re.compile(r"\w+(?:'\w+)*")


# Asked for a candidate's headline at every comparison with it; a headline is
# at most 1 000 characters, so 4 096 of them and their forms are under 10 MB.
@functools.lru_cache(maxsize=4096)
def normalize_title(title: str) -> str:
    """NFKC, case-folded, quotes straightened, dashes unified, white space
    collapsed, trailing punctuation and ellipsis dropped."""
    text = unicodedata.normalize("NFKC", title).translate(_QUOTES)
    text = _DASHES.sub("-", text).casefold()
    text = " ".join(text.split())
    return _TRAILING.sub("", text)


# A page compares each sighting with the same few stored texts many times.
# The caches are bounded by the bytes they hold, not by entries: a text may
# be 200 000 characters, and 1 024 entries of such texts held gigabytes. A
# value larger than its whole cache is made again when asked, not kept.
WORDS_BYTES_CACHED = 16_000_000  # texts and their words (about 60 bytes a word with its string)
SHINGLES_BYTES_CACHED = 16_000_000  # about 100 bytes a shingle
TOPIC_BYTES_CACHED = 16_000_000  # reports' texts and their topic counts (about 100 bytes a word)
MAX_CACHED_ROWS = 256  # SimHash column masks are kept for texts of up to this many shingles
# Headlines and teasers, nearly every text a listing page compares, are kept
# apart in C's LRU cache: counting bytes in Python costs more than making the
# words of a short text again. Bounded by entries, as each is small: at most
# about 6 kB with its words (or 6 kB of shingles), 25 MB a cache in all.
SHORT_TEXT_CHARS = 300
SHORT_TEXT_WORDS = 60
SHORT_TEXTS_CACHED = 4096


def _cache(budget: int, size: Callable[[Any], int]) -> Callable:
    """An LRU cache holding at most `budget` bytes, by each value's `size`."""
    return cachetools.cached(cachetools.LRUCache(budget, getsizeof=size), lock=threading.Lock())


def _words_of(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()))


_short_words = functools.lru_cache(maxsize=SHORT_TEXTS_CACHED)(_words_of)


def words(text: str) -> tuple[str, ...]:
    return _short_words(text) if len(text) <= SHORT_TEXT_CHARS else _costed_words(text)[0]


# The text is the cache's key: what an entry holds is the text and its words
# (a text of few, long words still costs its length).
@_cache(WORDS_BYTES_CACHED, operator.itemgetter(1))
def _costed_words(text: str) -> tuple[tuple[str, ...], int]:
    found = _words_of(text)
    return found, len(text) + 60 * len(found)


def _shingles_of(tokens: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    if len(tokens) < SHINGLE_WORDS:
        return frozenset({tokens}) if tokens else frozenset()
    return frozenset(tokens[i : i + SHINGLE_WORDS] for i in range(len(tokens) - SHINGLE_WORDS + 1))


_short_shingles = functools.lru_cache(maxsize=SHORT_TEXTS_CACHED)(_shingles_of)
_long_shingles = _cache(SHINGLES_BYTES_CACHED, lambda found: 100 * len(found))(_shingles_of)


def shingles(tokens: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    return (_short_shingles if len(tokens) <= SHORT_TEXT_WORDS else _long_shingles)(tokens)


# The shingle hashes of a text, one 64-bit row each, make one integer; the
# mask of a column picks bit i of every row, and its bit count says how many
# hashes set that bit. C does the counting, and it never lets go of the GIL:
# a library that releases it for every small array starves the event loop's
# thread, which then waits for it behind the ingest for half a second at a time.
def _columns(rows: int) -> tuple[int, ...]:
    # Each mask is a row count's 8 bytes long: 64 of them for a long text
    # are megabytes, kept only for the short texts nearly every page has.
    return _short_columns(rows) if rows <= MAX_CACHED_ROWS else _column_masks(rows)


def _column_masks(rows: int) -> tuple[int, ...]:
    ones = int.from_bytes(b"\0\0\0\0\0\0\0\1" * rows, "big")
    return tuple(ones << bit for bit in range(64))


_short_columns = functools.lru_cache(maxsize=MAX_CACHED_ROWS)(_column_masks)


def simhash(tokens: Sequence[str]) -> int:
    """Bit i is set when most shingle hashes set it (Charikar 2002). Each
    shingle's hash is the first 8 bytes of its BLAKE2b, read big-endian (the
    stored keys were made so)."""
    found = shingles(tuple(tokens))
    rows = b"".join([hashlib.blake2b(" ".join(shingle).encode(), digest_size=8).digest() for shingle in found])
    matrix = int.from_bytes(rows, "big")
    value = 0
    for bit, column in enumerate(_columns(len(found))):
        if 2 * (matrix & column).bit_count() > len(found):
            value |= 1 << bit
    return value


def simhash_bands(value: int) -> tuple[int, int, int, int]:
    """Two hashes within Hamming distance 3 agree on at least one of four bands."""
    return tuple((value >> (16 * i)) & 0xFFFF for i in range(4))  # type: ignore[return-value]


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=4096)  # asked for each candidate of a page
def identity_keys(fp: Fingerprint) -> tuple[tuple[str, str], ...]:
    """(kind, value) keys under which the store finds an item again."""
    keys = [(TITLE, fp.title_key)]
    if fp.lead_key:
        keys.append((LEAD, fp.lead_key))
    if fp.link_key:
        keys.append((LINK, fp.link_key))
    if fp.entry_key:
        keys.append((ENTRY, fp.entry_key))
    keys.extend((kind, format(band, "04x")) for kind, band in zip(BAND_KINDS, fp.bands, strict=True))
    return tuple(keys)


def topic_index_keys(fp: Fingerprint) -> tuple[tuple[str, str], ...]:
    return tuple((TOPIC, key) for key in fp.topics)


_BAND_KINDS = frozenset(BAND_KINDS)


def is_band(kind: str) -> bool:
    return kind in _BAND_KINDS


def stored_keys(ref: int, fp: Fingerprint, own: Sequence[tuple[str, str]]) -> list[tuple[int, str, str, int | None]]:
    """The fingerprint rows that let the store find an item again by a text
    it was seen with (`own`, its identity keys), the SimHash on band keys."""
    rows = [(ref, kind, value, fp.simhash if is_band(kind) else None) for kind, value in own]
    rows.extend((ref, TOPIC, value, None) for value in dict.fromkeys(fp.topics))
    return rows


def is_candidate(fp: Fingerprint, keys: AbstractSet[tuple[str, str]],
                 simhashes: AbstractSet[int | None]) -> bool:
    """Is an item known by these keys worth comparing texts with: same title
    or opening words, or a shared SimHash band of a text close enough (a
    shared band alone is often chance). The rule; a page applies it through
    its own index of keys (`page_candidates`)."""
    shared = [kind for kind, value in identity_keys(fp) if (kind, value) in keys]
    if any(not is_band(kind) for kind in shared):
        return True
    if not shared:
        return False
    return any(near(fp.simhash, other) for other in simhashes)


def near(simhash: int, other: int | None) -> bool:
    """Is a text with the other SimHash close enough to compare with (unknown:
    it may be)? At most MAX_SIMHASH_DISTANCE bits apart over 64, whether the
    store kept a SimHash signed or not. One call: asked for every chance band
    match, 60 a text at a million items."""
    return other is None or ((simhash ^ other) & UNSIGNED_64).bit_count() <= MAX_SIMHASH_DISTANCE


def fingerprint(title: str, text: str, link: str | None = None, entry_id: str | None = None) -> Fingerprint:
    tokens = words(text)
    # A dateline opens wire copy and would make every story from one agency
    # and day share its opening words; it is left out of the lead key.
    lead = words(DATELINE.sub("", text, count=1))[:LEAD_WORDS]
    value = simhash(tokens)
    return Fingerprint(
        title_key=_digest(normalize_title(title)),
        lead_key=_digest(" ".join(lead)) if len(lead) == LEAD_WORDS else None,
        simhash=value,
        bands=simhash_bands(value),
        topics=topic_keys(title),
        link_key=_digest(link) if link else None,
        entry_key=_digest(entry_id) if entry_id else None,
    )


def item_guid(title: str, text: str) -> str:
    name = normalize_title(title) + "\n" + " ".join(words(text))
    return uuid.uuid5(ID_NAMESPACE, name).urn


# --- comparing texts -------------------------------------------------------


def contains(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    """Is the shorter text part of the longer one: its prefix, or nearly all of
    its shingles found there."""
    if not short or len(short) > len(long):
        return False
    if long[: len(short)] == short:
        return True
    inner = shingles(short)
    return len(inner & shingles(long)) >= CONTAINMENT * len(inner)


def jaccard(a: tuple[str, ...], b: tuple[str, ...]) -> float:
    sa, sb = shingles(a), shingles(b)
    if not sa or not sb:
        return 0.0
    shared = len(sa & sb)  # the union is counted, not built
    return shared / (len(sa) + len(sb) - shared)


def texts_compatible(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    return contains(short, long) or jaccard(a, b) >= NEAR_DUPLICATE


@dataclass(frozen=True)
class Match:
    item: KnownItem
    rule: str  # "same-title", "contained-text" or "near-duplicate"


def decide(new: ParsedItem, candidates: list[KnownItem]) -> Match | None:
    """The stored item the new sighting is, or None for a new item.

    Candidates are tried in order of how strong the evidence is; among equals
    the oldest item (lowest id) wins, so the decision is deterministic."""
    new_title = normalize_title(new.title)
    new_words = words(new.text)
    best: Match | None = None
    for known in sorted(candidates, key=age):
        rule = match_rule(new_title, new_words, known, new.link, new.entry_id)
        if rule and (best is None or RULE_STRENGTH[rule] > RULE_STRENGTH[best.rule]):
            best = Match(known, rule)
    return best


def age_of(ref: int) -> tuple[bool, int]:
    """Sorts oldest first; items new on the page being read (negative refs,
    in page order) are younger than every stored one."""
    return ref < 0, abs(ref)


def age(known: KnownItem) -> tuple[bool, int]:
    return age_of(known.id)


RULE_STRENGTH = {"near-duplicate": 1, "contained-text": 2, "same-title": 3, "same-link": 4, "same-entry": 4}


def match_rule(new_title: str, new_words: tuple[str, ...], known: KnownItem,
               new_link: str | None = None, new_entry: str | None = None) -> str | None:
    if new_link and new_link == known.link:
        return "same-link"  # one address is one story, whatever its texts say
    if new_entry and (ENTRY, _digest(new_entry)) in known.keys:
        return "same-entry"  # a feed entry seen again, perhaps edited
    known_words = words(known.text)
    if normalize_title(known.title) == new_title:
        return "same-title" if texts_compatible(new_words, known_words) else None
    if min(len(new_words), len(known_words)) < MIN_WORDS_FOR_TEXT_MATCH:
        return None
    short, long = sorted((new_words, known_words), key=len)
    if contains(short, long):
        return "contained-text"
    if jaccard(new_words, known_words) >= NEAR_DUPLICATE:
        return "near-duplicate"
    return None


# --- merging ---------------------------------------------------------------


def _fuller(text: str) -> tuple[int, str]:
    """Order of preference between two texts: more words, then a fixed tie-break."""
    return len(words(text)), text


def _title_rank(title: str, complete: bool) -> tuple[bool, int, str]:
    """An article's headline beats a teaser's; among equals the fuller one."""
    return complete, len(title), title


def _date_rank(moment: datetime) -> tuple[date, bool, datetime]:
    """The earliest day wins; on one day, a time of day beats a bare day (a
    page that gives only the date), then the earlier time."""
    utc = moment.astimezone(timezone.utc)
    return utc.date(), utc.timetz() == MIDNIGHT, utc


def _link_rank(link: str, complete: bool) -> tuple[bool, str]:
    """An article's own address beats a listing's link to it; among equals a
    fixed tie-break, so the order files arrive in does not matter."""
    return complete, link


def merge(known: KnownItem, new: ParsedItem, new_tag_keys: dict[str, str]) -> ItemUpdate:
    """How a stored item changes with a new sighting of it.

    Every choice is a maximum over the sightings (the fullest content, the
    fullest summary, the best headline, the earliest date, the union of the
    tags), so the same files give the same item in whatever order they are
    read. `new_tag_keys` maps the sighting's tag keys to their names. An empty
    ItemUpdate means nothing changed, so a re-read writes nothing."""
    content = None
    if new.content and (known.content is None or _fuller(new.content) > _fuller(known.content)):
        content = new.content
    summary = None
    if new.summary and (known.summary is None or _fuller(new.summary) > _fuller(known.summary)):
        summary = new.summary
    title = None
    if _title_rank(new.title, new.complete) > _title_rank(known.title, known.content is not None):
        title = new.title
    published = None
    if new.published is not None and _date_rank(new.published) < _date_rank(known.published):
        published = new.published
    link = None
    if new.link and (known.link is None or _link_rank(new.link, new.complete)
                     > _link_rank(known.link, known.content is not None)):
        link = new.link
    new_tags = tuple(name for key, name in new_tag_keys.items() if key not in known.tag_keys)
    return ItemUpdate(title=title, summary=summary, content=content, published=published,
                      new_tags=new_tags, link=link)


# --- related stories ---------------------------------------------------------

# Words too common in news to say what a story is about.
STOPWORDS = frozenset("""
a about after again against all also an and any are as at be been before being but by can could
did do does during each few for from further had has have having he her here hers him his how i if
in into is it its itself just me more most my no nor not now of off on once only or other our out
over own said same says she should so some such than that the their them then there these they
this those through to too under until up very was we were what when where which while who whom why
will with would you your new news report reports media
""".split())
RELATED_TEXT = 0.45  # cosine of topic-word counts
RELATED_TITLE = 0.3  # Jaccard of headline topic words
MAX_RELATED_CANDIDATES = 10  # reports of one event share the most headline words
MAX_TITLE_WORDS = 10


def topic_words(text: str) -> list[str]:
    return [w for w in words(text) if len(w) > 2 and w not in STOPWORDS and not w.isdigit()]


# A page's related candidates are any of thousands of stored items, each
# headline asked for many times over a scan: with 1 024 kept, 1 000 bench
# files worked out 40 525 headlines' topics, with 8 192 each of their 6 706
# once. A headline is at most 1 000 characters, its topics a few words.
@functools.lru_cache(maxsize=8192)
def _headline_topics(title: str) -> frozenset[str]:
    return frozenset(topic_words(title))


class TopicCounts(NamedTuple):
    counts: Counter[str]
    norm: float
    size: int  # about the bytes keeping them takes: the report's characters, 100 a counted word


@_cache(TOPIC_BYTES_CACHED, operator.attrgetter("size"))
def _topic_counts(title: str, text: str) -> TopicCounts:
    """A report's topic-word counts and their norm."""
    counts = Counter(topic_words(f"{title} {text}"))
    return TopicCounts(counts, math.sqrt(sum(v * v for v in counts.values())),
                       len(title) + len(text) + 100 * len(counts))


def topic_keys(title: str) -> tuple[str, ...]:
    """Pairs of headline topic words: two reports of one event share some,
    and a lookup by them stays indexed."""
    unique = sorted(set(topic_words(title)[:MAX_TITLE_WORDS]))
    return tuple(_digest(f"{a} {b}")[:16] for n, a in enumerate(unique) for b in unique[n + 1 :])


def headlines_related(a_title: str, b_title: str) -> bool:
    """Do two headlines share enough topic words to be about one event."""
    return headline_topics_related(_headline_topics(a_title), _headline_topics(b_title))


def headline_topics_related(ta: frozenset[str], tb: frozenset[str]) -> bool:
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) >= RELATED_TITLE


class Report(NamedTuple):
    """What telling the same event is judged by: a headline's topic words,
    and the whole report's topic-word counts with their norm."""

    headline: frozenset[str]
    counts: Counter[str]
    norm: float


def report_of(title: str, text: str) -> Report:
    counts, norm, _ = _topic_counts(title, text)
    return Report(_headline_topics(title), counts, norm)


def is_related(a: Report, b: Report) -> bool:
    """The same event told in other words: headlines share topic words and the
    texts the vocabulary (cosine of topic-word counts). Never used to merge,
    only to link."""
    if not headline_topics_related(a.headline, b.headline):
        return False
    # Compared ten times a changed sighting: the product runs in C, over the
    # smaller vocabulary (a Counter's missing word is a Python call; get is not).
    small, large = sorted((a.counts, b.counts), key=len)
    dot = sum(map(operator.mul, small.values(), map(large.get, small, repeat(0))))
    return bool(a.norm and b.norm) and dot / (a.norm * b.norm) >= RELATED_TEXT


def related_ids(fp: Fingerprint, holders: Mapping[str, Collection[int]], exclude: int | None = None,
                limit: int = MAX_RELATED_CANDIDATES) -> list[int]:
    """The items (by id) whose headlines share the most topic-word pairs with
    the sighting's, oldest first among equals: the few worth comparing.
    `holders` maps each topic key to the items known by it."""
    shared = Counter(chain.from_iterable([holders.get(key, ()) for key in set(fp.topics)]))
    shared.pop(exclude, None)
    # Every headline of a long page may share its word pairs with hundreds of
    # items: counted and sorted by C, never a Python step per item. Ascending
    # refs are the page's new items youngest first, then the stored oldest first.
    refs = sorted(shared)
    stored_from = bisect.bisect_right(refs, 0)
    oldest_first = refs[stored_from:] + refs[stored_from - 1 :: -1] if stored_from else refs
    # A stable sort by count keeps the oldest first among equals.
    return sorted(oldest_first, key=shared.__getitem__, reverse=True)[:limit]


# --- candidates among the rows the store found ------------------------------------

KeyRow = tuple[str, str, int, "int | None"]  # (kind, value, item id, SimHash on band keys)


def lookup_keys(fps: Sequence[Fingerprint]) -> dict[tuple[str, str], list[Fingerprint]]:
    """The keys to look the texts up by, each with the texts that have it."""
    by_key: dict[tuple[str, str], list[Fingerprint]] = {}
    for fp in fps:
        for key in identity_keys(fp):
            by_key.setdefault(key, []).append(fp)
    return by_key


def candidate_keys(rows: Sequence[KeyRow], by_key: Mapping[tuple[str, str], list[Fingerprint]]
                   ) -> dict[int, tuple[frozenset[tuple[str, str]], frozenset[int | None]]]:
    """The items worth comparing with the texts, by id: (the keys they were
    found by, the SimHashes of their band keys). A band shared with a distant
    text is chance, more common the larger the store: such rows are dropped
    as they are read. Every item left shares a title or opening words with
    one of the texts, or a band with one close to it (`is_candidate`)."""
    found: dict[int, tuple[set[tuple[str, str]], set[int | None]]] = {}
    for kind, value, item_id, simhash in rows:
        band = is_band(kind)
        if band and not any(near(fp.simhash, simhash) for fp in by_key[kind, value]):
            continue
        entry = found.get(item_id)
        if entry is None:  # not setdefault: it would build two sets for every row
            entry = found[item_id] = (set(), set())
        entry[0].add((kind, value))
        if band:
            entry[1].add(simhash)
    return {item_id: (frozenset(keys), frozenset(simhashes)) for item_id, (keys, simhashes) in found.items()}


def related_wanted(sightings: Sequence[tuple[str, Fingerprint]], rows: Sequence[KeyRow]) -> dict[int, set[str]]:
    """For each (headline, fingerprint), the stored items (among the topic-key
    rows found) whose headlines share the most topic-word pairs with it, one
    more than needed (one may be itself); each with the headlines that found it."""
    holders: dict[str, set[int]] = {}
    for _, value, item_id, _ in rows:
        holders.setdefault(value, set()).add(item_id)
    wanted: dict[int, set[str]] = {}
    for title, fp in sightings:
        for item_id in related_ids(fp, holders, limit=MAX_RELATED_CANDIDATES + 1):
            wanted.setdefault(item_id, set()).add(title)
    return wanted


def related_headlines(titles: Sequence[tuple[int, str]], wanted: Mapping[int, set[str]]) -> list[int]:
    """The items whose stored headline is related to one that found them:
    most candidates stop here, before their text is read."""
    return [item_id for item_id, stored in titles if any(headlines_related(title, stored)
                                                         for title in wanted[item_id])]


def topic_keys_of(rows: Sequence[KeyRow], ids: Collection[int]
                  ) -> dict[int, tuple[frozenset[tuple[str, str]], frozenset[int | None]]]:
    """The topic keys each of the items was found by (and no SimHashes)."""
    keys: dict[int, set[tuple[str, str]]] = {item_id: set() for item_id in ids}
    for kind, value, item_id, _ in rows:
        if item_id in keys:
            keys[item_id].add((kind, value))
    return {item_id: (frozenset(found), frozenset()) for item_id, found in keys.items()}


# --- a whole page --------------------------------------------------------------


def applied(known: KnownItem, change: ItemUpdate, keys: Iterable[tuple[str, str]] = (),
            simhash: int | None = None) -> KnownItem:
    """The item after a merge; it keeps the keys (and SimHash) of the text
    merged into it, when given."""
    def pick(new, old):
        return old if new is None else new

    return replace(
        known,
        title=pick(change.title, known.title),
        summary=pick(change.summary, known.summary),
        content=pick(change.content, known.content),
        published=pick(change.published, known.published),
        link=pick(change.link, known.link),
        tag_keys=known.tag_keys | {tag_key(name) for name in change.new_tags},
        keys=known.keys.union(keys),
        simhashes=known.simhashes if simhash is None else known.simhashes | {simhash},
    )


def page_candidates(fp: Fingerprint, own: Sequence[tuple[str, str]], holders: Mapping[tuple[str, str], Iterable[int]],
                    state: Mapping[int, KnownItem]) -> list[int]:
    """The refs `is_candidate` would keep among those holding one of the
    sighting's keys (`own`), found through the keys that hold them: a holder
    of a title, opening words or address is one without looking further. A
    holder of a SimHash band only (on a page of templated entries, up to 50
    a band) is one when a text of it is close, or when it shares a stronger
    key whose holders let it go; holders let go only when MAX_HOLDERS_PER_KEY
    newer ones hold the key."""
    strong: set[int] = set()
    banded: set[int] = set()
    strong_keys = []
    let_go = False
    for key in own:
        refs = holders.get(key, ())
        if is_band(key[0]):
            banded.update(refs)
        else:
            strong_keys.append(key)
            strong.update(refs)
            let_go = let_go or len(refs) >= MAX_HOLDERS_PER_KEY
    found = list(strong)
    for ref in banded - strong:
        known = state[ref]
        if (any(near(fp.simhash, other) for other in known.simhashes)
                or (let_go and not known.keys.isdisjoint(strong_keys))):
            found.append(ref)
    return found


def plan_page(sightings: Sequence[tuple[ParsedItem, Fingerprint]],
              stored: Mapping[int, KnownItem]) -> PagePlan:
    """Which item each sighting of a page is, and how the items change.

    `stored` holds the candidates the store found for the page's
    fingerprints. Sightings are decided in page order, each against the stored
    items and the ones the page has shown so far, so a story listed twice on
    one page is one item too. Every sighting must carry its date."""
    state: dict[int, KnownItem] = dict(stored)
    # Who is known by each key, as the store's index: a sighting is compared
    # with the items sharing one of its keys, never with the whole page, so a
    # page of 100 000 items costs 100 000 lookups, not 5 billion comparisons.
    # Like the store's lookup, a key keeps its newest MAX_HOLDERS_PER_KEY items.
    holders: dict[tuple[str, str], deque[int]] = {}

    def index(ref: int, keys: Iterable[tuple[str, str]]) -> None:
        for key in keys:
            known_by = holders.setdefault(key, deque(maxlen=MAX_HOLDERS_PER_KEY))
            if ref not in known_by:
                known_by.append(ref)

    for ref, known in stored.items():
        index(ref, known.keys)
    gained: dict[int, dict[str, str]] = {}  # tag key → name each item gains
    changed: set[int] = set()
    refs: list[tuple[int, str]] = []
    fingerprints: list[tuple[int, Fingerprint]] = []
    key_rows: list[tuple[int, str, str, int | None]] = []
    linking: list[int] = []
    new_refs = 0
    for position, (item, fp) in enumerate(sightings):
        tags = {tag_key(name): name for name in item.tags}
        own = identity_keys(fp)  # once: a Fingerprint hashes all its fields at every cache lookup
        match = decide(item, [state[ref] for ref in page_candidates(fp, own, holders, state)])
        # The item keeps the keys of every text it was seen with.
        if match is None:
            new_refs += 1
            ref = -new_refs
            state[ref] = KnownItem(id=ref, guid=item_guid(item.title, item.text), title=item.title,
                                   summary=item.summary, content=item.content, published=item.published,
                                   link=item.link, tag_keys=frozenset(tags), keys=frozenset(own),
                                   simhashes=frozenset({fp.simhash}))
            gained[ref] = tags
            changes_entry = True
        else:
            ref = match.item.id
            change = merge(match.item, item, tags)
            state[ref] = applied(match.item, change, own, fp.simhash)
            gained.setdefault(ref, {}).update((tag_key(name), name) for name in change.new_tags)
            changes_entry = change.changes_entry
            if changes_entry and ref > 0:
                changed.add(ref)
        index(ref, own)
        refs.append((ref, item.title))
        fingerprints.append((ref, fp))
        key_rows.extend(stored_keys(ref, fp, own))
        if changes_entry:  # a sighting that changed nothing relates nothing new
            linking.append(position)
    planned = list(range(-1, -new_refs - 1, -1)) + sorted(changed)
    items = tuple(
        PlannedItem(ref=ref, guid=state[ref].guid, title=state[ref].title,
                    summary=state[ref].summary, content=state[ref].content,
                    published=state[ref].published, new_tags=tuple(gained.get(ref, {}).values()),
                    link=state[ref].link)
        for ref in planned
    )
    return PagePlan(items=items, sightings=tuple(refs), fingerprints=tuple(fingerprints),
                    keys=tuple(key_rows), linking=tuple(linking))


def plan_links(plan: PagePlan, sightings: Sequence[tuple[ParsedItem, Fingerprint]],
               related: Sequence[KnownItem]) -> tuple[tuple[int, int], ...]:
    """Pairs of refs that report one event, among the page's changed sightings,
    the stored items the store found by topic keys and the page's own items."""
    texts = {k.id: (k.title, k.text) for k in related}
    texts.update((item.ref, (item.title, item.text)) for item in plan.items)
    holders: dict[str, set[int]] = {}
    for known in related:
        for kind, value in known.keys:
            if kind == TOPIC:
                holders.setdefault(value, set()).add(known.id)
    for ref, fp in plan.fingerprints:
        if ref in texts:  # an unchanged stored item is compared only if the store found it
            for value in fp.topics:
                known_by = holders.setdefault(value, set())
                # Bounded as the store's topic lookup is: a word pair in every
                # headline of a long page must not make the page quadratic.
                if len(known_by) < MAX_HOLDERS_PER_KEY:
                    known_by.add(ref)
    links: set[tuple[int, int]] = set()
    reports: dict[int, Report] = {}  # each compared with up to ten sightings
    for position in plan.linking:
        (item, fp), ref = sightings[position], plan.sightings[position][0]
        told = report_of(item.title, item.text)
        for other in related_ids(fp, holders, exclude=ref):
            if (theirs := reports.get(other)) is None:
                theirs = reports[other] = report_of(*texts[other])
            if is_related(told, theirs):
                links.add((min(ref, other), max(ref, other)))
    return tuple(sorted(links))

