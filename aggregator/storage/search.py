"""The search index: kept in step by the writer (an item is indexed again
whenever its title, texts or tags change), and the query a search runs.
Each database keeps the index its own way (backend `index`, `unindex`,
`text_ids`, `text_ranks`); the words in it are made by aggregator.search,
the same for both."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from types import ModuleType

from sqlalchemy import ColumnElement, Select, and_, exists, func, not_, or_, select
from sqlalchemy.engine import Connection

from aggregator.names import tag_key
from aggregator.search import HasTag, SearchDocument, SearchQuery, Words, document
from aggregator.storage.engine import backend
from aggregator.storage.schema import item_tags, items_table, tags_table

BATCH = 500  # items read and indexed per statement


def _backend(connection: Connection) -> ModuleType:
    return backend(connection.dialect.name)


def documents(connection: Connection, ids: Sequence[int]) -> dict[int, SearchDocument]:
    """What the index holds of each item, from the item as stored now."""
    items = items_table.c
    names: dict[int, list[str]] = {}
    for item_id, name in connection.execute(
        select(item_tags.c.item_id, tags_table.c.name)
        .join(tags_table, tags_table.c.id == item_tags.c.tag_id)
        .where(item_tags.c.item_id.in_(ids)).order_by(item_tags.c.item_id, tags_table.c.id)
    ):
        names.setdefault(item_id, []).append(name)
    rows = connection.execute(select(items.id, items.title, items.summary, items.content).where(items.id.in_(ids)))
    return {row.id: document(row.title, row.summary, row.content, tuple(names.get(row.id, ()))) for row in rows}


def index_items(connection: Connection, ids: Iterable[int],
                new: Mapping[int, SearchDocument] | None = None) -> None:
    """(Re)index the items as they are stored now; `new` items, indexed for
    the first time, come with their documents, made from what was just written."""
    db = _backend(connection)
    if new:
        db.index(connection, new, fresh=True)
    ordered = sorted(set(ids) - set(new or ()))
    for start in range(0, len(ordered), BATCH):
        db.index(connection, documents(connection, ordered[start:start + BATCH]), fresh=False)


def unindex_items(connection: Connection, ids: Sequence[int]) -> None:
    """Take deleted items out of an index that does not follow the items table by itself."""
    if ids:
        _backend(connection).unindex(connection, ids)


def build_index(connection: Connection) -> None:
    """Create the index and fill it from every stored item (a migration's work)."""
    _backend(connection).create_index(connection)
    last = 0
    while ids := connection.scalars(select(items_table.c.id).where(items_table.c.id > last)
                                    .order_by(items_table.c.id).limit(BATCH)).all():
        index_items(connection, ids)
        last = ids[-1]


# --- searching ---------------------------------------------------------------


def _tag_ids(atom: HasTag) -> Select:
    """The tag named by slug or by name."""
    tags = tags_table.c
    return select(tags.id).where(or_(tags.slug == atom.name.lower(), tags.key == tag_key(atom.name)))


def _has_tag(atom: HasTag, item_id: ColumnElement) -> ColumnElement[bool]:
    """The item carries the tag named by slug or by name."""
    tagged = item_tags.alias()
    return exists().where(tagged.c.item_id == item_id, tagged.c.tag_id.in_(_tag_ids(atom)))


def _any_of(db: ModuleType, atoms: Sequence[Words | HasTag], item_id: ColumnElement) -> ColumnElement[bool]:
    phrases = [atom.words for atom in atoms if isinstance(atom, Words)]
    either = [db.text_filter(item_id, [phrases])] if phrases else []
    either += [_has_tag(atom, item_id) for atom in atoms if isinstance(atom, HasTag)]
    return or_(*either)


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=timezone.utc)


@dataclass(frozen=True)
class _Parts:
    """A query as the index and the tables answer it."""

    texts: list[list[tuple[str, ...]]]  # clauses of words alone: the index answers them in one query
    excluded: list[tuple[str, ...]]  # phrases none may have, in that same query
    others: list[Words | HasTag]  # exclusions asked apart (all of them, when there are no texts)
    alone: bool  # the index alone answers the whole query


def _parts(query: SearchQuery) -> _Parts:
    texts = [[atom.words for atom in clause] for clause in query.all_of
             if all(isinstance(atom, Words) for atom in clause)]
    excluded = [atom.words for atom in query.none_of if texts and isinstance(atom, Words)]
    others = [atom for atom in query.none_of if not (texts and isinstance(atom, Words))]
    alone = bool(texts) and len(texts) == len(query.all_of) and not (others or query.since or query.until)
    return _Parts(texts, excluded, others, alone)


def conditions(db: ModuleType, query: SearchQuery, words: str = "first", item_id: ColumnElement = items_table.c.id,
               published: ColumnElement = items_table.c.published,
               tag_had: HasTag | None = None) -> list[ColumnElement[bool]]:
    """What an item must be to match: the words read as the plan says, of the
    item with `item_id` dated `published` (the item's own columns unless
    others hold them), `tag_had` known to be carried."""
    parts = _parts(query)
    found = [db.text_filter(item_id, parts.texts, words, parts.excluded)] if parts.texts else []
    found += [_any_of(db, clause, item_id) for clause in query.all_of
              if any(isinstance(atom, HasTag) for atom in clause) and clause != (tag_had,)]
    if parts.others:
        found.append(not_(_any_of(db, parts.others, item_id)))
    if query.since:
        found.append(published >= _start_of(query.since))
    if query.until:
        found.append(published < _start_of(query.until + timedelta(days=1)))
    return found


@dataclass(frozen=True)
class Plan:
    """How the database is best asked for the newest matches: how the words
    are read (see the backends' `text_plan`), and the tag whose items, read
    newest first from their own index, are the ones to look among."""

    words: str = "first"
    tag: int | None = None  # its id
    tag_had: HasTag | None = None  # as the query names it


def required_tag(connection: Connection, query: SearchQuery) -> tuple[int | None, HasTag | None]:
    """The one tag every match must carry, when the query names one: its id and its name in the query."""
    for clause in query.all_of:
        if len(clause) == 1 and isinstance(clause[0], HasTag):
            found = connection.scalars(_tag_ids(clause[0]).limit(2)).all()
            if len(found) == 1:
                return found[0], clause[0]
    return None, None


def plan_for(connection: Connection, query: SearchQuery, by_rank: bool) -> Plan:
    """How the database is best asked for a query's matches, with the tag
    every match must carry, if any (see `matching` and `counting`)."""
    parts = _parts(query)
    if parts.texts and by_rank:
        return Plan()  # ranked in the index
    tag = required_tag(connection, query)
    if not parts.texts:
        return Plan("first", *tag)
    return Plan(_backend(connection).text_plan(connection, parts.texts, parts.excluded), *tag)


def _among_tag(db: ModuleType, query: SearchQuery, plan: Plan) -> Select:
    """The matches among the plan's tag's items, newest first. The tag's rows
    carry their item's date, so its index gives the feed order, and the
    query is asked of them without reading the items, where the words are
    looked up by id (the rows are read where the words are in them)."""
    tagged = item_tags.c
    where = and_(tagged.tag_id == plan.tag,
                 *conditions(db, query, plan.words, tagged.item_id, tagged.published, plan.tag_had))
    found = select(tagged.item_id.label("id")).select_from(item_tags)
    if not db.TEXT_BY_ID:
        found = found.join(items_table, items_table.c.id == tagged.item_id)
    return found.where(where).order_by(tagged.published.desc(), tagged.item_id)


def matching(dialect: str, query: SearchQuery, by_rank: bool, plan: Plan = Plan(), wanted: int = 0) -> Select:
    """The ids of the matches in order: newest first, or best first. Best
    first, a query the index answers alone is ranked there, and only the
    `wanted` best are read."""
    db = backend(dialect)
    items = items_table.c
    parts = _parts(query)
    if plan.tag is not None and (plan.words != "first" or not parts.texts):
        # A tag's items are fewer than all, in the same order: unless a few
        # matches of the words are quicker to sort, look among the tag's newest.
        return _among_tag(db, query, plan)
    where = and_(*conditions(db, query, plan.words))
    if by_rank and parts.texts:
        ranks = db.text_ranks(parts.texts, wanted if parts.alone else None, parts.excluded)
        return (select(items.id).join(ranks, ranks.c.item_id == items.id).where(where)
                .order_by(ranks.c.rank, items.published.desc(), items.id))
    return select(items.id).where(where).order_by(items.published.desc(), items.id)


def counting(dialect: str, query: SearchQuery, cap: int, plan: Plan = Plan()) -> Select:
    """How many items match, counted no further than `cap`: a word in every
    other item is not counted to the last. With a tag to have, the matches
    are looked up in the tag's rows, not in the items (each is asked of the
    index there too when the words match nearly every item)."""
    db = backend(dialect)
    parts = _parts(query)
    if parts.alone:
        return db.text_count(parts.texts, cap, parts.excluded)
    if plan.tag is not None:
        words = "ordered" if plan.words == "probe" else "first"
        found = _among_tag(db, query, Plan(words, plan.tag, plan.tag_had)).order_by(None).limit(cap)
    else:
        found = select(items_table.c.id).where(and_(*conditions(db, query))).limit(cap)
    return select(func.count()).select_from(found.subquery())
