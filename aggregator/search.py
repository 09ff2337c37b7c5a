"""Full-text search, the parts that are the same on every database: the
words a text is indexed by, the query language people type, and the
highlighting of what matched. Pure: no store, no clock.

Both databases index the words made here, not their own reading of the
text, so a query finds the same items on SQLite and on PostgreSQL: case and
accents do not count ("Cote" finds "Côte"), nothing is stemmed, and a word
is a run of letters and digits."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

from aggregator.errors import BadRequest
from aggregator.names import clean_tag

MAX_QUERY_CHARS = 500
MAX_TERMS = 30  # words, phrases and filters in one query: each is an index lookup
WORD = re.compile(r"[^\W_]+")  # letters and digits, as SQLite's unicode61 tokenizer splits text


def fold(text: str) -> str:
    """Lower case without accents: "Côte" → "cote", "Straße" → "strasse"."""
    if text.isascii():  # most text: nothing to take apart
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def words(text: str) -> tuple[str, ...]:
    """The words a text is indexed and searched by, folded."""
    return tuple(WORD.findall(fold(text)))


@dataclass(frozen=True)
class SearchDocument:
    """What the index holds of an item: its words, one space apart, in three
    fields (the title weighs most)."""

    title: str
    body: str
    tags: str


def document(title: str, summary: str | None, content: str | None, tag_names: tuple[str, ...]) -> SearchDocument:
    # A teaser the text starts with is not indexed twice.
    parts = [summary, content] if summary and content and not content.startswith(summary) else [content or summary]
    return SearchDocument(
        title=" ".join(words(title)),
        body=" ".join(w for part in parts if part for w in words(part)),
        tags=" ".join(w for name in tag_names for w in words(name)),
    )


# --- the query language ------------------------------------------------------


class BadQuery(BadRequest):
    """A search query that cannot be read; the message says where."""


@dataclass(frozen=True)
class Words:
    """A word, or the words of a "quoted phrase" in order, folded."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class HasTag:
    """tag:name: the item carries the tag (by its slug or name)."""

    name: str


Atom = Words | HasTag


@dataclass(frozen=True)
class SearchQuery:
    """A query as the store runs it: every clause of `all_of` must match (a
    clause matches when any of its atoms does), none of `none_of` may, and
    the item was published within [since, until] (UTC days)."""

    text: str  # as typed
    all_of: tuple[tuple[Atom, ...], ...] = ()
    none_of: tuple[Atom, ...] = ()
    since: date | None = None
    until: date | None = None

    @property
    def wanted_words(self) -> frozenset[str]:
        """The words a result is shown with highlighted."""
        return frozenset(w for clause in self.all_of for atom in clause if isinstance(atom, Words)
                         for w in atom.words)


@dataclass(frozen=True)
class _Lexeme:
    position: int  # 1-based, for messages
    negated: bool
    field: str  # "tag", "since", "until", or "" for text
    value: str
    quoted: bool

    @property
    def is_or(self) -> bool:
        return self.value == "OR" and not (self.negated or self.field or self.quoted)


@dataclass(frozen=True)
class _Term:
    position: int
    negated: bool
    atom: Atom | None  # None for a date, or for text with no word in it ("!!!")
    field: str = ""
    day: date | None = None


FIELDS = ("tag", "since", "until")
_FIELD = re.compile(r"([A-Za-z]+):")


def _lex(text: str) -> list[_Lexeme]:
    """The query cut into terms: an optional "-", an optional known field
    name, then a "quoted phrase" or a run of anything but spaces and quotes."""
    lexemes, i, end = [], 0, len(text)
    while i < end:
        if text[i].isspace():
            i += 1
            continue
        start = i
        negated = text[i] == "-" and i + 1 < end and not text[i + 1].isspace()
        i += negated
        field = ""
        if (named := _FIELD.match(text, i)) and named[1].lower() in FIELDS:
            field, i = named[1].lower(), named.end()
        if i < end and text[i] == '"':
            close = text.find('"', i + 1)
            if close < 0:
                raise BadQuery(f"the quote at character {i + 1} is not closed")
            value, quoted, i = text[i + 1:close], True, close + 1
        else:
            run = i
            while i < end and not text[i].isspace() and text[i] != '"':
                i += 1
            value, quoted = text[run:i], False
        lexemes.append(_Lexeme(start + 1, negated, field, value, quoted))
    return lexemes


def _term(lexeme: _Lexeme) -> _Term:
    field, value, at = lexeme.field, lexeme.value, f"(character {lexeme.position})"
    if field in ("since", "until"):
        if lexeme.negated:
            other = "until" if field == "since" else "since"
            raise BadQuery(f"-{field}: cannot be excluded; use {other}: instead {at}")
        try:
            if len(value) != 10:
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise BadQuery(f"{field}: wants a date like 2025-03-01, got {value!r} {at}") from None
        return _Term(lexeme.position, False, None, field, day)
    if field == "tag":
        name = clean_tag(value)
        if not name:
            raise BadQuery(f"tag: wants a tag name {at}")
        return _Term(lexeme.position, lexeme.negated, HasTag(name))
    found = words(value)
    return _Term(lexeme.position, lexeme.negated, Words(found) if found else None)


def parse_query(text: str) -> SearchQuery:
    """A query as people type it into a search box:

        idlib aleppo            both words
        "no-fly zone"           these words in this order
        -ceasefire              not this word (also -"a phrase", -tag:name)
        idlib OR aleppo         either (OR binds closer than a space: a OR b c = (a or b) and c)
        tag:idlib               carries the tag (by slug or name: tag:"Côte d'Ivoire")
        since:2025-03-01        published that day or later (UTC); until:2025-03-31, that day or before

    Any other "name:" is text ("10:30" is two words). BadQuery, naming the
    character where reading stopped, for what cannot be read."""
    if len(text) > MAX_QUERY_CHARS:
        raise BadQuery(f"the query is {len(text)} characters long; at most {MAX_QUERY_CHARS}")
    # It is shown in feed titles and pages: XML has no place for control characters.
    if (bad := next((c for c in text if not c.isprintable() and not c.isspace()), None)) is not None:
        raise BadQuery(f"the query holds a control character ({bad!r}) at character {text.index(bad) + 1}")
    lexemes = [lexeme for lexeme in _lex(text) if not (lexeme.value == "AND" and not lexeme.quoted
                                                       and not lexeme.field and not lexeme.negated)]
    if sum(not lexeme.is_or for lexeme in lexemes) > MAX_TERMS:
        raise BadQuery(f"the query has more than {MAX_TERMS} terms")
    clauses: list[list[_Term]] = []
    joined = False  # the last lexeme was an OR
    for n, lexeme in enumerate(lexemes):
        if lexeme.is_or:
            after = lexemes[n + 1] if n + 1 < len(lexemes) else None
            if not clauses or joined or after is None or after.is_or:
                raise BadQuery(f"OR needs a term on each side (character {lexeme.position})")
            if any(side.negated or side.field in ("since", "until") for side in (lexemes[n - 1], after)):
                raise BadQuery(f"OR joins terms to look for, not exclusions or dates (character {lexeme.position})")
            joined = True
            continue
        term = _term(lexeme)
        if joined:
            clauses[-1].append(term)
        else:
            clauses.append([term])
        joined = False
    since = until = None
    all_of: list[tuple[Atom, ...]] = []
    none_of: list[Atom] = []
    for clause in clauses:
        first = clause[0]
        if first.field == "since":
            since = first.day
        elif first.field == "until":
            until = first.day
        elif first.negated:
            none_of.extend([first.atom] if first.atom else [])
        elif atoms := tuple(dict.fromkeys(term.atom for term in clause if term.atom)):
            all_of.append(atoms)  # a term with no word in it ("!!!") looks for nothing
    if since and until and since > until:
        raise BadQuery(f"since:{since} is after until:{until}: nothing can match")
    query = SearchQuery(text=" ".join(text.split()), all_of=tuple(dict.fromkeys(all_of)),
                        none_of=tuple(dict.fromkeys(none_of)), since=since, until=until)
    if not (query.all_of or query.none_of or query.since or query.until):
        raise BadQuery("the query has no word, tag or date to look for")
    return query


# --- showing what matched ----------------------------------------------------------


def highlight(text: str, wanted: frozenset[str]) -> Markup:
    """The text, escaped, with each wanted word in <mark>."""
    if not wanted:
        return escape(text)
    out, last = [], 0
    for match in WORD.finditer(text):
        if set(words(match[0])) & wanted:
            out.append(escape(text[last:match.start()]))
            out.append(Markup("<mark>{}</mark>").format(match[0]))
            last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


def excerpt(text: str, wanted: frozenset[str], width: int = 280) -> str:
    """About `width` characters of the text around the first wanted word, cut
    at spaces, with "…" where it was cut; the text's opening when no wanted
    word is in it."""
    start = 0
    for match in WORD.finditer(text):
        if set(words(match[0])) & wanted:
            start = max(0, match.start() - width // 3)
            break
    if start:
        space = text.find(" ", start)
        start = space + 1 if 0 <= space < start + 40 else start
    end = start + width
    if end < len(text):
        space = text.rfind(" ", start, end)
        end = space if space > start else end
    shown = " ".join(text[start:end].split())
    return ("… " if start else "") + shown + (" …" if end < len(text) else "")
