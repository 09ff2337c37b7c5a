"""Every write to the store, and the reads an ingest makes inside its
transaction. Policy stays out: the writer fetches what dedup asks for and
writes what dedup planned."""

from __future__ import annotations

import functools
import itertools
import operator
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from sqlalchemy import Select, Table, bindparam, delete, exists, insert, select, text, update
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import ClauseElement, TextClause

from aggregator.clock import MICROSECOND, from_micros, to_micros
from aggregator.model import FileStatus, KnownItem, PagePlan, PlannedItem, SourceFile
from aggregator.names import guid_key, tag_key, tag_slug
from aggregator.search import document
from aggregator.storage import search
from aggregator.storage.engine import insert_if_absent
from aggregator.storage.schema import (
    StateRow,
    fingerprints_table,
    item_links,
    item_sources,
    item_tags,
    items_table,
    sightings,
    sources_table,
    tags_table,
)

# Candidate lookups read at most this many items (the newest) per key, so
# their cost does not grow with the store.
MAX_ITEMS_PER_KEY = 50
MAX_ITEMS_PER_TOPIC = 10
KEYS_PER_QUERY = 200  # SQLite allows 500 terms in one compound SELECT

# (kind, value, item id, SimHash of a band key as stored: a signed 64-bit integer)
KeyRow = tuple[str, str, int, "int | None"]


def _signed(value: int) -> int:
    """A 64-bit SimHash as the signed BIGINT every database has."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _newest_per_key(count: int) -> TextClause:
    """One index range read per key, bounded by its LIMIT, for `count` keys.
    Written as SQL text because every database reads it the same way and
    building it as an expression tree on each call cost more than running it."""
    part = ("SELECT * FROM (SELECT kind, value, item_id, simhash FROM fingerprints "
            "WHERE kind = :k{n} AND value = :v{n} ORDER BY item_id DESC LIMIT :per_key) AS p{n}")
    return text(" UNION ALL ".join(part.format(n=n) for n in range(count)))


def _for_driver(statement: ClauseElement, dialect: Dialect, columns: Sequence[str] = ()
                ) -> tuple[str, tuple[str, ...] | None]:
    """A statement's SQL in the driver's own terms, and the names of its
    positional parameters in order (None: the driver takes them by name)."""
    # An IN list is spelled out here, once per length, not on every run.
    compiled = statement.compile(dialect=dialect, column_keys=list(columns) or None,
                                 compile_kwargs={"render_postcompile": True})
    return str(compiled), tuple(compiled.positiontup or ()) if compiled.positional else None


@functools.lru_cache(maxsize=64)
def _compiled_rows(table: Table, columns: tuple[str, ...], if_absent: bool, dialect: Dialect
                   ) -> tuple[str, tuple[int, ...] | None]:
    """An INSERT's SQL for these columns, compiled once, and where each
    column's value goes in the driver's positional parameters."""
    statement = insert_if_absent(dialect.name, table) if if_absent else insert(table)
    sql, names = _for_driver(statement, dialect, columns)
    return sql, None if names is None else tuple(columns.index(name) for name in names)


@functools.lru_cache(maxsize=1024)
def _listed_sql(statement: Select, name: str, count: int, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
    """A prebuilt SELECT with its one IN list (`name`) of `count` values, in
    the driver's terms. The list's values are named name_1 … name_count."""
    return _for_driver(statement.params({name: [None] * count}), dialect)


@functools.lru_cache(maxsize=2 * KEYS_PER_QUERY)
def _newest_per_key_sql(count: int, dialect: Dialect) -> tuple[str, tuple[str, ...] | None]:
    return _for_driver(_newest_per_key(count), dialect)


# Statements every file runs, built once: building a SELECT from expressions
# took three times as long as SQLite took to run it.
_items, _sources, _state = items_table.c, sources_table.c, StateRow.__table__.c
_IDS = bindparam("ids", expanding=True)
_GUIDS = bindparam("guids", expanding=True)
_TAG_KEYS = (select(item_tags.c.item_id, tags_table.c.key)
             .join(tags_table, tags_table.c.id == item_tags.c.tag_id).where(item_tags.c.item_id.in_(_IDS)))
_KNOWN_ITEMS = select(_items.id, _items.guid, _items.title, _items.summary, _items.content, _items.published,
                      _items.link).where(_items.id.in_(_IDS))
_TITLES = select(_items.id, _items.title).where(_items.id.in_(_IDS))
_TAKEN_GUIDS = select(_items.guid).where(_items.guid.in_(_GUIDS))
_IDS_BY_GUID = select(_items.guid, _items.id).where(_items.guid.in_(_GUIDS))
_SOURCE_ID = select(_sources.id).where(_sources.path == bindparam("at_path"))
_NEW_SOURCE = insert(sources_table).returning(_sources.id)
_SOURCE_READ = update(sources_table).where(_sources.id == bindparam("source_id"))
_SOURCE_TOUCHED = update(sources_table).where(_sources.path == bindparam("at_path"))
_FORGET_SIGHTINGS = delete(sightings).where(sightings.c.source_id == bindparam("source_id"))
_ITEM_UPDATED = update(items_table).where(_items.id == bindparam("item_id"))
_TAG_DATES_MOVED = (update(item_tags)
                    .where(item_tags.c.item_id == bindparam("tagged_item"),
                           item_tags.c.published != bindparam("moved_to"))
                    .values(published=bindparam("moved_to")))
_TAG_IDS = select(tags_table.c.key, tags_table.c.id).where(tags_table.c.key.in_(bindparam("keys", expanding=True)))
_LINKED = select(item_links.c.item_id, item_links.c.related_id).where(item_links.c.item_id.in_(_IDS))
_STATE = select(_state.value).where(_state.key == bindparam("state_key"))
_DATA_VERSION_BUMPED = update(StateRow.__table__).where(_state.key == "data_version").values(value=_state.value + 1)
_DATA_CHANGED_AT = update(StateRow.__table__).where(_state.key == "data_changed_at")


class Writer:
    """One ingest transaction. A page costs a fixed handful of statements
    whatever its number of items: one query finds the rows of all its keys,
    and rows are written many at a time."""

    def __init__(self, connection: Connection, now: datetime):
        self.connection = connection
        self.now = now
        self.changed = False  # anything a feed shows
        self.touched: set[int] = set()  # items whose entries changed: their tags' feeds change
        self.forgot = False  # items were deleted: any feed may have changed
        self._stamps = itertools.count()
        self._first_change: datetime | None = None
        self.last_change = now

    def stamp(self) -> datetime:
        """The time of one item's change: the transaction's time, a
        microsecond later for each item it changes, in page order, and always
        after the store's last change (a clock set back does not go back).
        The items of a page change one after the other, and a feed reader
        (and the W3C validator) takes entries with one `updated` for a
        generator that dates every entry with the time it ran."""
        if self._first_change is None:
            before = self.connection.scalar(_STATE, {"state_key": "data_changed_at"})
            self._first_change = max(self.now, from_micros(before) + MICROSECOND) if before else self.now
        self.last_change = self._first_change + next(self._stamps) * MICROSECOND
        return self.last_change

    def record_change(self) -> None:
        """Pollers and replicas see a new data version, dated by the last change."""
        self.connection.execute(_DATA_VERSION_BUMPED)
        self.connection.execute(_DATA_CHANGED_AT, {"value": to_micros(self.last_change)})

    # --- what dedup asks for -------------------------------------------------

    def keyed_rows(self, keys: Iterable[tuple[str, str]], per_key: int = MAX_ITEMS_PER_KEY) -> list[KeyRow]:
        """Rows of the items known by any of the (kind, value) keys, at most
        the `per_key` newest items per key: a key common to thousands of items
        (a stock headline, a chance SimHash band) costs no more than a rare one."""
        rows: list[KeyRow] = []
        ordered = sorted(keys)
        for start in range(0, len(ordered), KEYS_PER_QUERY):
            chunk = ordered[start : start + KEYS_PER_QUERY]
            params: dict[str, object] = {"per_key": per_key}
            for n, (kind, value) in enumerate(chunk):
                params[f"k{n}"], params[f"v{n}"] = kind, value
            # Run as the driver's SQL: hundreds of parameters per statement,
            # passed through unprocessed.
            sql, names = _newest_per_key_sql(len(chunk), self.connection.dialect)
            rows.extend(self._driver_rows(sql, params if names is None else tuple(map(params.get, names))))
        return rows

    def _driver_rows(self, sql: str, params: Sequence | Mapping) -> list[tuple]:
        """Rows as the driver gives them, for SQL of plain ids and strings:
        a small SELECT run through SQLAlchemy's execution and result objects
        cost five times what the database took to answer it."""
        dbapi = self.connection.dialect.loaded_dbapi
        cursor = self.connection.connection.cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()
        except dbapi.Error as error:  # the store maps SQLAlchemy's errors to its own
            raise DBAPIError.instance(sql, params, error, dbapi.Error) from error
        finally:
            cursor.close()

    def _listed(self, statement: Select, name: str, values: Sequence) -> list[tuple]:
        """Rows of a prebuilt SELECT for the values of its one IN list."""
        rows: list[tuple] = []
        for start in range(0, len(values), search.BATCH):
            chunk = values[start : start + search.BATCH]
            sql, names = _listed_sql(statement, name, len(chunk), self.connection.dialect)
            params = {f"{name}_{n}": value for n, value in enumerate(chunk, 1)}
            rows.extend(self._driver_rows(sql, params if names is None else tuple(map(params.__getitem__, names))))
        return rows

    def tag_keys(self, ids: Sequence[int]) -> dict[int, set[str]]:
        found: dict[int, set[str]] = {}
        for item_id, key in self._listed(_TAG_KEYS, "ids", ids):
            found.setdefault(item_id, set()).add(key)
        return found

    def known_items(self, found: Mapping[int, tuple[frozenset, frozenset]],
                    with_tags: bool = False) -> list[KnownItem]:
        """The items as dedup compares them, with (the keys they were found
        by, the SimHashes of those) as given by item id."""
        tags = self.tag_keys(list(found)) if with_tags else {}
        rows = self.connection.execute(_KNOWN_ITEMS, {"ids": list(found)})
        return [KnownItem(*row, tag_keys=frozenset(tags.get(row.id, ())), keys=found[row.id][0],
                          simhashes=found[row.id][1]) for row in rows]

    def titles(self, ids: Iterable[int]) -> list[tuple[int, str]]:
        return self._listed(_TITLES, "ids", list(ids))

    def taken_guids(self, guids: Sequence[str]) -> set[str]:
        if not guids:
            return set()
        return {guid for guid, in self._listed(_TAKEN_GUIDS, "guids", guids)}

    # --- seed files -----------------------------------------------------------

    def record_source(self, source: SourceFile) -> int:
        """Record what was read of a seed file; its id."""
        values = {"size": source.size, "mtime_ns": source.mtime_ns, "sha256": source.sha256,
                  "status": source.status, "reason": source.reason, "item_count": source.item_count,
                  "checked_at": self.now}
        source_id = self.connection.scalar(_SOURCE_ID, {"at_path": source.path})
        if source_id is None:
            return self.connection.scalar(_NEW_SOURCE, {"path": source.path, **values})
        self.connection.execute(_SOURCE_READ, {"source_id": source_id, **values})
        return source_id

    def touch_source(self, path: str, size: int, mtime_ns: int) -> None:
        """Same bytes, new size or mtime: remember them so the next scan skips the file."""
        self.connection.execute(_SOURCE_TOUCHED, {"at_path": path, "size": size, "mtime_ns": mtime_ns,
                                                  "checked_at": self.now})

    def forget_items_only_from(self, path: str) -> int:
        """Delete the items no other seed file shows than this one, with their
        keys, tags and sightings: the file was still being written when it was
        read, and its whole version shows them again, whole. How many went."""
        source_id = self.connection.scalar(_SOURCE_ID, {"at_path": path})
        if source_id is None:
            return 0
        seen = item_sources.c
        elsewhere = item_sources.alias()
        only_here = (select(seen.item_id).where(seen.source_id == source_id)
                     .where(~exists().where(elsewhere.c.item_id == seen.item_id,
                                            elsewhere.c.source_id != source_id)))
        ids = self.connection.scalars(only_here).all()
        gone = 0
        for start in range(0, len(ids), search.BATCH):  # a statement takes a bounded number of values
            batch = ids[start:start + search.BATCH]
            gone += self.connection.execute(delete(items_table).where(items_table.c.id.in_(batch))).rowcount
            search.unindex_items(self.connection, batch)
        if gone:
            self.stamp()  # the feeds changed now
            self.changed = self.forgot = True
        return gone

    def mark_missing(self, paths: Sequence[str]) -> None:
        if paths:
            self.connection.execute(
                update(sources_table).where(sources_table.c.path.in_(paths))
                .values(status=FileStatus.MISSING, reason="file no longer in the seed folder",
                        checked_at=self.now))

    # --- a page's plan ----------------------------------------------------------

    def _insert_new(self, table: Table, rows: list[dict]) -> None:
        if rows:
            self.connection.execute(insert_if_absent(self.connection.dialect.name, table), rows)

    def _insert_rows(self, table: Table, columns: tuple[str, ...], rows: list[tuple], if_absent: bool = False) -> None:
        """Rows of plain numbers and strings, straight to the driver's
        executemany: a page writes tens of thousands of key rows, and building
        a parameter dictionary for each row took longer than the database
        took to store it."""
        if not rows:
            return
        sql, order = _compiled_rows(table, columns, if_absent, self.connection.dialect)
        if order is None:
            params = [dict(zip(columns, row, strict=True)) for row in rows]
        elif order == tuple(range(len(columns))):
            params = rows
        else:
            params = list(map(operator.itemgetter(*order), rows))
        self.connection.exec_driver_sql(sql, params)

    def save(self, plan: PagePlan, source_id: int) -> None:
        """Write a page's plan: its new items, changes, keys, tags and sightings."""
        ids = self._insert_items([item for item in plan.items if item.is_new])

        def stored(ref: int) -> int:
            return ids.get(ref, ref)

        changed = [item for item in plan.items if not item.is_new]
        self.touched.update(ids.values(), (item.ref for item in changed))
        if changed:
            self.connection.execute(
                _ITEM_UPDATED,
                [{"item_id": item.ref, "title": item.title, "summary": item.summary,
                  "content": item.content, "published": item.published, "link": item.link,
                  "updated": self.stamp()}
                 for item in changed])
            # Rows whose date is already right are left alone, not rewritten.
            self.connection.execute(
                _TAG_DATES_MOVED,
                [{"tagged_item": item.ref, "moved_to": item.published} for item in changed])
        tag_ids = self._tag_ids([name for item in plan.items for name in item.new_tags])
        self._insert_new(item_tags, [{"item_id": stored(item.ref), "tag_id": tag_ids[tag_key(name)],
                                      "published": item.published}
                                     for item in plan.items for name in item.new_tags])
        self._insert_rows(fingerprints_table, ("item_id", "kind", "value", "simhash"), [
            (stored(ref), kind, value, None if simhash is None else _signed(simhash))
            for ref, kind, value, simhash in plan.keys], if_absent=True)
        self._insert_rows(item_sources, ("item_id", "source_id"),
                          [(stored(ref), source_id) for ref in dict.fromkeys(ref for ref, _ in plan.sightings)],
                          if_absent=True)
        self.connection.execute(_FORGET_SIGHTINGS, {"source_id": source_id})
        self._insert_rows(sightings, ("source_id", "position", "item_id", "title"), [
            (source_id, position, stored(ref), title) for position, (ref, title) in enumerate(plan.sightings)])
        self._link([(stored(a), stored(b)) for a, b in plan.links])
        # Every item in the plan is new, or changed its texts or tags. A new
        # one is indexed from the plan: every tag it has, it gains here.
        search.index_items(self.connection, [item.ref for item in changed], new={
            ids[item.ref]: document(item.title, item.summary, item.content, item.new_tags)
            for item in plan.items if item.is_new})
        self.changed = self.changed or bool(plan.items)

    def _insert_items(self, new: list[PlannedItem]) -> dict[int, int]:
        """Insert new items; their ids by ref."""
        if not new:
            return {}
        rows = [{"guid": item.guid, "key": guid_key(item.guid), "title": item.title,
                 "summary": item.summary, "content": item.content, "published": item.published,
                 "link": item.link, "updated": self.stamp(), "first_seen": self.now} for item in new]
        # One executemany, then the ids by their unique guids: a RETURNING in
        # the rows' order is one statement per row on SQLite.
        self.connection.execute(insert(items_table), rows)
        ids = dict(self._listed(_IDS_BY_GUID, "guids", [item.guid for item in new]))
        return {item.ref: ids[item.guid] for item in new}

    def _tag_ids(self, names: Sequence[str]) -> dict[str, int]:
        """Tag ids by key, creating the tags not seen before."""
        by_key = {tag_key(name): name for name in reversed(names)}  # the first name shown wins
        if not by_key:
            return {}
        table = tags_table
        ids = dict(self._listed(_TAG_IDS, "keys", list(by_key)))
        for key in sorted(by_key.keys() - ids.keys()):
            name = by_key[key]
            ids[key] = self.connection.scalar(insert(table).values(
                name=name, key=key, slug=self._free_slug(tag_slug(name))).returning(table.c.id))
        return ids

    def _free_slug(self, slug: str) -> str:
        # Two tags may fold to one slug ("C" and "C++"): the later one is numbered.
        candidate, n = slug, 1
        while self.connection.scalar(select(tags_table.c.id).where(tags_table.c.slug == candidate)) is not None:
            n += 1
            candidate = f"{slug}-{n}"
        return candidate

    def _link(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Record pairs of items as reports of one event; both entries gain a
        link, so both count as updated for the feeds."""
        if not pairs:
            return
        existing = set(self._listed(_LINKED, "ids", list({a for a, _ in pairs})))
        new = [(a, b) for a, b in dict.fromkeys(pairs) if (a, b) not in existing]
        if not new:
            return
        self._insert_rows(item_links, ("item_id", "related_id"),
                          [pair for a, b in new for pair in ((a, b), (b, a))])
        self.touched.update(i for pair in new for i in pair)
        self.connection.execute(_ITEM_UPDATED, [{"item_id": item_id, "updated": self.stamp()}
                                                for item_id in sorted({i for pair in new for i in pair})])
        self.changed = True
