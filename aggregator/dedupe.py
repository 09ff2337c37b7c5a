"""Identity of news items: keys, fingerprints and the decision whether a new
sighting is an item already stored. Pure: data in, decision out.

A false merge silently loses a story, a missed one shows a story twice; the
rules below therefore merge only on evidence in the text itself:

1. same normalised title and compatible texts (one contains the other, or
   near-duplicates);
2. a teaser contained in a longer text (as its prefix, or with at least 90 %
   of its word shingles) whatever the titles;
3. near-duplicate texts (Jaccard similarity of word shingles ≥ 0.8) under
   different titles: an edited headline.

Candidates come from indexed keys (title, opening words, SimHash bands after
Manku, Jain and Das Sarma 2007), so a lookup never scans all items.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass

from aggregator.model import Fingerprint, ItemUpdate, KnownItem, ParsedItem

SHINGLE_WORDS = 3
LEAD_WORDS = 12  # opening words that key a text; teasers share them with their article
MIN_WORDS_FOR_TEXT_MATCH = 12  # shorter texts only merge under the same title
CONTAINMENT = 0.9
NEAR_DUPLICATE = 0.8

# Items get uuid5 ids in this namespace, so a clean run over the same files
# gives the same ids; the id is stored at first sighting and never recomputed.
ID_NAMESPACE = uuid.UUID("6f1c3a52-2d0e-4b8f-9d7a-3c5e1b2a4f60")

_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"', "„": '"',
                         "‟": '"', "«": '"', "»": '"', "′": "'", "″": '"'})
_DASHES = re.compile("[\u2010-\u2015\u2212\ufe58\ufe63\uff0d]")
_TRAILING = re.compile(r"[\s.,;:!?…'\"\-]+$")
_WORD = re.compile(r"\w+(?:'\w+)*")
# A dateline opens wire copy and would make every story from one agency and
# day share its opening words; it is left out of the lead key.
_DATELINE = re.compile(r"^[A-Z][A-Z.'\- ]*[A-Z.],\s+[A-Za-z]{3,9}\.?\s+\d{1,2}(?:,\s*\d{4})?\.?\s*"
                       r"(?:/[^/\n]{1,20}/\.?|\([^)\n]{1,20}\)\s*[-–—])\s*")


def normalize_title(title: str) -> str:
    """NFKC, case-folded, quotes straightened, dashes unified, white space
    collapsed, trailing punctuation and ellipsis dropped."""
    text = unicodedata.normalize("NFKC", title).translate(_QUOTES)
    text = _DASHES.sub("-", text).casefold()
    text = " ".join(text.split())
    return _TRAILING.sub("", text)


def words(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return _WORD.findall(text)


def shingles(tokens: list[str]) -> set[tuple[str, ...]]:
    if len(tokens) < SHINGLE_WORDS:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + SHINGLE_WORDS]) for i in range(len(tokens) - SHINGLE_WORDS + 1)}


def _hash64(value: str) -> int:
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


def simhash(tokens: list[str]) -> int:
    weights = [0] * 64
    for shingle in shingles(tokens):
        h = _hash64(" ".join(shingle))
        for bit in range(64):
            weights[bit] += 1 if h >> bit & 1 else -1
    return sum(1 << bit for bit in range(64) if weights[bit] > 0)


def simhash_bands(value: int) -> tuple[int, int, int, int]:
    """Two hashes within Hamming distance 3 agree on at least one of four bands."""
    return tuple((value >> (16 * i)) & 0xFFFF for i in range(4))  # type: ignore[return-value]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def fingerprint(title: str, text: str) -> Fingerprint:
    tokens = words(text)
    lead = words(_DATELINE.sub("", text, count=1))[:LEAD_WORDS]
    value = simhash(tokens)
    return Fingerprint(
        title_key=_digest(normalize_title(title)),
        lead_key=_digest(" ".join(lead)) if len(lead) == LEAD_WORDS else None,
        simhash=value,
        bands=simhash_bands(value),
        topics=topic_keys(title),
    )


def item_guid(title: str, text: str) -> str:
    name = normalize_title(title) + "\n" + " ".join(words(text))
    return uuid.uuid5(ID_NAMESPACE, name).urn


def guid_key(guid: str) -> str:
    """URL-safe form of an item id, for /items/{key}."""
    if guid.startswith("urn:uuid:"):
        return uuid.UUID(guid[9:]).hex
    return hashlib.sha256(guid.encode()).hexdigest()[:32]


# --- comparing texts -------------------------------------------------------


def contains(short: list[str], long: list[str]) -> bool:
    """Is the shorter text part of the longer one: its prefix, or nearly all of
    its shingles found there."""
    if not short or len(short) > len(long):
        return False
    if long[: len(short)] == short:
        return True
    inner = shingles(short)
    return len(inner & shingles(long)) >= CONTAINMENT * len(inner)


def jaccard(a: list[str], b: list[str]) -> float:
    sa, sb = shingles(a), shingles(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def texts_compatible(a: list[str], b: list[str]) -> bool:
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
    for known in sorted(candidates, key=lambda k: k.id):
        rule = match_rule(new_title, new_words, known)
        if rule and (best is None or RULE_STRENGTH[rule] > RULE_STRENGTH[best.rule]):
            best = Match(known, rule)
    return best


RULE_STRENGTH = {"near-duplicate": 1, "contained-text": 2, "same-title": 3}


def match_rule(new_title: str, new_words: list[str], known: KnownItem) -> str | None:
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
    if new.published is not None and new.published < known.published:
        published = new.published
    new_tags = tuple(name for key, name in new_tag_keys.items() if key not in known.tag_keys)
    return ItemUpdate(title=title, summary=summary, content=content, published=published,
                      new_tags=new_tags)


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
MAX_TITLE_WORDS = 10


def topic_words(text: str) -> list[str]:
    return [w for w in words(text) if len(w) > 2 and w not in STOPWORDS and not w.isdigit()]


def topic_keys(title: str) -> tuple[str, ...]:
    """Pairs of headline topic words: two reports of one event share some,
    and a lookup by them stays indexed."""
    unique = sorted(set(topic_words(title)[:MAX_TITLE_WORDS]))
    return tuple(_digest(f"{a} {b}")[:16] for n, a in enumerate(unique) for b in unique[n + 1 :])


def _cosine(a: list[str], b: list[str]) -> float:
    ca, cb = Counter(a), Counter(b)
    dot = sum(count * cb[word] for word, count in ca.items())
    norm = math.sqrt(sum(v * v for v in ca.values()) * sum(v * v for v in cb.values()))
    return dot / norm if norm else 0.0


def is_related(a_title: str, a_text: str, b_title: str, b_text: str) -> bool:
    """The same event told in other words: headlines share topic words and the
    texts the vocabulary. Never used to merge, only to link."""
    ta, tb = set(topic_words(a_title)), set(topic_words(b_title))
    if not ta or not tb or len(ta & tb) / len(ta | tb) < RELATED_TITLE:
        return False
    return _cosine(topic_words(f"{a_title} {a_text}"), topic_words(f"{b_title} {b_text}")) >= RELATED_TEXT


def tag_key(name: str) -> str:
    """Tags compare case-insensitively and by Unicode normal form."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def tag_slug(name: str) -> str:
    """Lowercase ASCII, accents folded, other runs of characters one "-":
    "Côte d'Ivoire" → "cote-d-ivoire"."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug or "tag-" + hashlib.sha256(tag_key(name).encode()).hexdigest()[:8]
